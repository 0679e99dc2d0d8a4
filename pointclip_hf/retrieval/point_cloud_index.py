"""[`PointCloudIndex`]: a finished index folder in memory, searched by text or by example clouds, exactly (torch) or
with faiss (`pip install 'pointclip_hf[retrieval]'`) through `datasets`' `FaissIndex`."""

import os
from pathlib import Path

import torch

from ..argument_checks import check_counts
from ..embeddings import embed_point_clouds, embed_texts, pooled_for_text_search
from ..evaluation.fingerprint import run_fingerprint
from ..model.processing_pointclip import processor_for_model
from .index_files import IndexFileError, read_complete

BACKENDS = ("auto", "torch", "faiss")
_QUERY_BLOCK = 256


class PointCloudIndex:
    """
    Unit embeddings of a collection of clouds with what each one is (`{"path"}` or `{"row", "label"}`).

    Text queries are scored on the clouds' view-summed embeddings (`C` values each, `pooled_for_text_search`), queries
    by example on the full `views * C`; both give the inner product of [`embed_point_clouds`] and [`embed_texts`].

    Args:
        header (`dict`): what the index was built from (`index.json`).
        embeds (`torch.Tensor` of shape `(clouds, views * C)`): unit cloud embeddings.
        logit_scale (`torch.Tensor` of shape `(clouds,)`): each cloud's logit scale.
        items (`list[dict]`): one entry per cloud.
        backend (`str`, *optional*, defaults to `"auto"`): `"torch"` (exact), `"faiss"` (exact inner-product
            `IndexFlatIP`), or `"auto"`: faiss when installed.
    """

    def __init__(self, header: dict, embeds: torch.Tensor, logit_scale: torch.Tensor, items: list[dict],
                 backend: str = "auto"):  # fmt: skip
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
        self.header, self.embeds, self.logit_scale, self.items = header, embeds, logit_scale, items
        self.num_views = int(header["num_views"])
        self.pooled = pooled_for_text_search(embeds, self.num_views)
        self.backend = _resolve_backend(backend)
        self._faiss = {}

    @classmethod
    def load(cls, folder: str | os.PathLike, backend: str = "auto") -> "PointCloudIndex":
        """Load the index folder written by [`build_index`]; a missing or damaged one is an `IndexFileError`."""
        return cls(*read_complete(Path(folder)), backend=backend)

    def __len__(self) -> int:
        return len(self.items)

    def search(self, query_embeds: torch.Tensor, top_k: int = 5, pooled: bool = False) -> list[list[dict]]:
        """
        The `top_k` clouds of highest inner product with each query.

        Args:
            query_embeds (`torch.Tensor` of shape `(queries, width)`):
                Unit queries: of `views * C` values, or of `C` values with `pooled=True` (label embeddings).
            top_k (`int`, *optional*, defaults to 5):
                Results per query (at most the index size).
            pooled (`bool`, *optional*, defaults to `False`):
                Score against the view-summed cloud embeddings.

        Returns:
            `list[list[dict]]`: per query, `{"rank", "score", **item}` by decreasing score.
        """
        check_counts({"top_k": top_k})
        keys = self.pooled if pooled else self.embeds
        queries = query_embeds.detach().float().cpu()
        if queries.ndim != 2 or queries.shape[1] != keys.shape[1]:
            raise ValueError(f"Queries must have shape (queries, {keys.shape[1]}), got {tuple(queries.shape)}.")
        k = min(top_k, len(self))
        scores, ids = self._faiss_search(queries, k, pooled) if self.backend == "faiss" else _exact(keys, queries, k)
        return [
            [{"rank": rank + 1, "score": float(score), **self.items[i]} for rank, (score, i) in enumerate(zip(s, r))]
            for s, r in zip(scores.tolist(), ids.tolist())
        ]

    def search_text(self, model, texts, top_k: int = 5, processor=None, prompt_templates=None) -> list[list[dict]]:
        """The `top_k` clouds for each text (embedded with [`embed_texts`]); `model` must be the index's model."""
        self.check_model(model, processor)
        text_embeds = embed_texts(model, texts, processor=processor, prompt_templates=prompt_templates)
        label_embeds = text_embeds[:, : text_embeds.shape[1] // self.num_views] * self.num_views**0.5
        return self.search(label_embeds, top_k, pooled=True)

    def search_like(self, model, point_clouds, top_k: int = 5, processor=None) -> list[list[dict]]:
        """The `top_k` clouds most like each example cloud (arrays or files, embedded with [`embed_point_clouds`])."""
        self.check_model(model, processor)
        return self.search(embed_point_clouds(model, point_clouds, processor=processor).embeds, top_k)

    def check_model(self, model, processor=None) -> None:
        """Refuse a model or processor other than the index's: its scores would be meaningless."""
        processor = processor_for_model(model, processor)
        current = run_fingerprint(model, processor, [], 0, {})
        built = self.header["fingerprint"]
        changed = [key for key in ("config_sha256", "adapter_sha256") if current[key] != built.get(key)]
        if _without_up_axis(current["processor"]) != _without_up_axis(built.get("processor", {})):
            changed.append("processor")
        if changed:
            raise IndexFileError(
                f"This index was built with another model or processor ({', '.join(changed)} differ; built with "
                f"{built.get('model')!r}): query it with the model it was built with."
            )

    def _faiss_search(self, queries: torch.Tensor, k: int, pooled: bool):
        if pooled not in self._faiss:
            import faiss
            from datasets.search import FaissIndex

            keys = (self.pooled if pooled else self.embeds).contiguous().numpy()
            exact_inner_product = faiss.IndexFlatIP(keys.shape[1])
            exact_inner_product.add(keys)
            self._faiss[pooled] = FaissIndex(custom_index=exact_inner_product)
        result = self._faiss[pooled].search_batch(queries.contiguous().numpy(), k=k)
        return torch.from_numpy(result.total_scores), torch.from_numpy(result.total_indices)


def _without_up_axis(settings: dict) -> dict:
    """Processor settings without `up_axis`: how the query files stand is theirs, not the index's."""
    return {key: value for key, value in settings.items() if key != "up_axis"}


def _resolve_backend(backend: str) -> str:
    if backend == "torch":
        return backend
    try:
        import faiss  # noqa: F401
    except ImportError:
        if backend == "faiss":
            raise ImportError("backend='faiss' needs faiss: pip install 'pointclip_hf[retrieval]'") from None
        return "torch"
    return "faiss"


def _exact(keys: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k inner products, a block of queries at a time."""
    blocks = [(keys @ block.T).T.topk(k, dim=-1) for block in queries.split(_QUERY_BLOCK)]
    return torch.cat([b.values for b in blocks]), torch.cat([b.indices for b in blocks])
