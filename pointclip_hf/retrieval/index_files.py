"""The files of an index folder: `index.json` (what it was built from), `embeddings.safetensors` and `items.json` once
complete, and while it is built, `chunks/` of safetensors files each holding the embeddings of some clouds."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file

from ..atomic_files import save_file_atomically, write_file_atomically

HEADER_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
ITEMS_FILE = "items.json"
CHUNKS_DIR = "chunks"
FORMAT = "pointclip-index/1"


class IndexFileError(ValueError):
    """An index folder that is not usable: missing, damaged, or built by another run; one line naming the folder."""


def read_header(folder: Path) -> dict | None:
    """The header of `folder`, or `None` when it has none yet."""
    path = folder / HEADER_FILE
    if not path.exists():
        return None
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
        problem = None if isinstance(header, dict) and header.get("format") == FORMAT else f"format is not {FORMAT!r}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        problem = f"not readable JSON: {error}"
    if problem is not None:
        raise IndexFileError(f"{str(path)!r} is not a pointclip index header ({problem}).")
    return header


def write_header(folder: Path, header: dict) -> None:
    write_file_atomically(folder / HEADER_FILE, json.dumps(header, indent=2, sort_keys=True).encode("utf-8"))


def write_chunk(folder: Path, indices: torch.Tensor, embeds: torch.Tensor, logit_scale: torch.Tensor) -> None:
    """Store the embeddings of the clouds `indices` as one chunk file, atomically (a crash leaves none or all of it)."""
    chunks = folder / CHUNKS_DIR
    chunks.mkdir(exist_ok=True)
    name = f"chunk-{int(indices[0]):09d}-{int(indices[-1]):09d}-{len(indices)}.safetensors"
    tensors = {"indices": indices.long(), "embeds": embeds.float(), "logit_scale": logit_scale.float()}
    write_file_atomically(chunks / name, save({k: v.cpu().contiguous() for k, v in tensors.items()}))


def read_chunks(folder: Path, num_items: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """Every chunk of `folder`, concatenated: `indices`, `embeds`, `logit_scale`; a damaged chunk is an error."""
    parts = []
    for path in sorted((folder / CHUNKS_DIR).glob("chunk-*.safetensors")):
        try:
            part = load_file(path)
            problem = _chunk_problem(part, num_items, width)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            problem = f"is damaged ({error})"
        if problem is not None:
            raise IndexFileError(
                f"Index chunk {str(path)!r} {problem}; rebuild with --no-resume (resume=False in Python)."
            ) from None
        parts.append(part)
    if not parts:
        return {"indices": torch.zeros(0, dtype=torch.long), "embeds": torch.zeros(0, width or 0),
                "logit_scale": torch.zeros(0)}  # fmt: skip
    return {key: torch.cat([part[key] for part in parts]) for key in ("indices", "embeds", "logit_scale")}


def _chunk_problem(part: dict, num_items: int, width: int | None) -> str | None:
    """What makes a chunk's tensors unusable for an index of `num_items` clouds of `width` (`None`: nothing)."""
    indices, embeds, scale = part.get("indices"), part.get("embeds"), part.get("logit_scale")
    if indices is None or embeds is None or scale is None or embeds.ndim != 2 or len(embeds) != len(indices):
        return "lacks indices/embeds/logit_scale of matching lengths"
    if len(indices) and (indices.min() < 0 or indices.max() >= num_items):
        return f"holds clouds outside 0..{num_items - 1}"
    if width is not None and embeds.shape[1] != width:
        return f"has width {embeds.shape[1]}, the index {width}"
    return None


def write_complete(folder: Path, embeds: torch.Tensor, logit_scale: torch.Tensor, items: list[dict]) -> None:
    """Write the finished index (embeddings, then items) and remove the chunks."""
    tensors = {"embeds": embeds.float().contiguous(), "logit_scale": logit_scale.float().contiguous()}
    save_file_atomically(folder / EMBEDDINGS_FILE, lambda temporary: save_file(tensors, temporary))  # no copy in memory
    write_file_atomically(folder / ITEMS_FILE, json.dumps(items).encode("utf-8"))
    shutil.rmtree(folder / CHUNKS_DIR, ignore_errors=True)


def remove_outputs(folder: Path) -> None:
    """Remove what an earlier build left (for a fresh start)."""
    for name in (HEADER_FILE, EMBEDDINGS_FILE, ITEMS_FILE):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / CHUNKS_DIR, ignore_errors=True)


def read_complete(folder: Path) -> tuple[dict, torch.Tensor, torch.Tensor, list[dict]]:
    """`(header, embeds, logit_scale, items)` of a finished index, checked against each other."""
    header = read_header(folder)
    if header is None or not (folder / EMBEDDINGS_FILE).exists() or not (folder / ITEMS_FILE).exists():
        raise IndexFileError(f"{str(folder)!r} holds no finished index (build it with `pointclip index`).")
    try:
        tensors = load_file(folder / EMBEDDINGS_FILE)
        items = json.loads((folder / ITEMS_FILE).read_text(encoding="utf-8"))
        embeds, scale = tensors.get("embeds"), tensors.get("logit_scale")
        problem = _finished_index_problem(header, embeds, scale, items)
    except Exception as error:  # noqa: BLE001 - safetensors / json errors of a damaged file
        problem = f"are damaged ({type(error).__name__}: {error})"
    if problem is not None:
        raise IndexFileError(f"Index files in {str(folder)!r} {problem}; rebuild the index.")
    return header, embeds, scale, items


def _finished_index_problem(header: dict, embeds, scale, items) -> str | None:
    """What makes the files of a finished index disagree with each other or with `header` (`None`: nothing)."""
    if embeds is None or scale is None or not isinstance(items, list):
        return "lack the embeddings or the item list"
    if not len(embeds) == len(scale) == len(items) == header.get("num_items"):
        return "disagree on the number of clouds"
    if embeds.ndim != 2 or embeds.shape[1] != header.get("width") or not torch.isfinite(embeds).all():
        return "hold embeddings that are not finite vectors of the header's width"
    return None
