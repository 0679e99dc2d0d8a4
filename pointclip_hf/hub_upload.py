"""Where a PointCLIP model goes to the Hub: adapter weights, config, processor and model card in one commit, with the
arguments of transformers' `push_to_hub`, every one checked before anything is created on the Hub."""

import inspect
import os
import tempfile

from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from .model.processing_pointclip import processor_for_model
from .model_card import build_model_card

CARD_ARGUMENTS = set(inspect.signature(build_model_card).parameters) - {"model", "repo_id"}
SAVE_ARGUMENTS = ("max_shard_size", "variant", "safe_serialization")


def push_model_to_hub(
    model,
    repo_id: str,
    *,
    processor=None,
    model_card: ModelCard | None = None,
    replace_model_card: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
    save_directory: str | os.PathLike | None = None,
    **kwargs,
):
    r"""
    Upload a [`PointCLIPModel`] to the Hub in one commit: `config.json`, the adapter weights, the processor and its
    model card. An existing `README.md` in the repo is kept and its metadata merged with ours unless
    `replace_model_card=True`.

    Args:
        model ([`PointCLIPModel`]):
            The model.
        repo_id (`str`):
            `"user/name"` (created if needed).
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to `processor_for_model(model)`.
        model_card (`ModelCard`, *optional*):
            A ready card; by default one from [`build_model_card`] with the card arguments below.
        replace_model_card (`bool`, *optional*, defaults to `False`):
            Overwrite a README already in the repo instead of keeping its text.
        commit_message, commit_description (`str`, *optional*):
            The commit's message and description.
        private (`bool`, *optional*):
            Create the repo private.
        token (`str` or `bool`, *optional*):
            The Hub token.
        revision (`str`, *optional*):
            The branch to push to; created from `main` when missing.
        create_pr (`bool`, *optional*, defaults to `False`):
            Open a pull request instead of committing.
        tags (`list[str]`, *optional*):
            Extra card tags.
        save_directory (`str` or `os.PathLike`, *optional*):
            Also keep the uploaded files there (as `save_pretrained(..., push_to_hub=True)` does).
        kwargs:
            [`build_model_card`] arguments (`training`, `evaluation`, `dataset_name`, `shots`, `model_name`,
            `template_path`) and `save_pretrained` arguments (`max_shard_size`, `variant`, `safe_serialization`).

    Returns:
        The `CommitInfo` of the upload.
    """
    save_kwargs = {key: kwargs.pop(key) for key in SAVE_ARGUMENTS if key in kwargs}
    card_kwargs = _check_push_arguments(model, repo_id, tags, kwargs)
    card = model_card or build_model_card(model, repo_id=repo_id, **card_kwargs)
    if tags:
        card.data.tags = sorted(set(card.data.tags or []) | set(tags))
    processor = processor_for_model(model, processor)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    if not replace_model_card:
        card = _merge_with_existing_card(api, repo_id, revision, card)
    with tempfile.TemporaryDirectory() as temporary:
        folder = save_directory or temporary
        model.save_pretrained(folder, **save_kwargs)
        processor.save_pretrained(folder)
        card.save(os.path.join(folder, "README.md"))
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload PointCLIP model",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )


_LOCAL_BASE_ADVICE = (
    "push that CLIP to the Hub first and set model.config.clip_model_name_or_path to its repo id (and clip_revision to "
    "its commit), or set it to None to upload the CLIP weights with the adapter."
)
_LOCAL_DATASET_ADVICE = "the card's public metadata needs a Hub dataset id (or a short name such as 'modelnet40')."


def _check_push_arguments(model, repo_id, tags, card_kwargs: dict) -> dict:
    """Raise before any Hub call on an argument that would leave a broken or unusable repo."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a non-empty string such as 'user/name', got {repo_id!r}.")
    unknown = sorted(set(card_kwargs) - CARD_ARGUMENTS)
    bad_tags = tags is not None and (isinstance(tags, str) or not all(isinstance(tag, str) and tag for tag in tags))
    if unknown or bad_tags:
        raise TypeError(
            f"push_to_hub got unexpected arguments {unknown}."
            if unknown
            else f"tags must be a list of non-empty strings, got {tags!r}."
        )
    public_names = (
        ("model.config.clip_model_name_or_path", model.config.clip_model_name_or_path, _LOCAL_BASE_ADVICE),
        ("dataset_name", card_kwargs.get("dataset_name"), _LOCAL_DATASET_ADVICE),
    )
    for name, value, advice in public_names:
        if value is not None and os.path.exists(str(value)):
            raise ValueError(f"{name} {str(value)!r} is a local path (a local folder or file), which nobody else can "
                             f"load: {advice}")  # fmt: skip
    return card_kwargs


def _merge_with_existing_card(api: HfApi, repo_id: str, revision: str | None, card: ModelCard) -> ModelCard:
    """The repo's own README with our metadata merged in (its license and extra keys kept, tags united), or `card`."""
    try:
        path = api.hf_hub_download(repo_id, "README.md", revision=revision)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return card
    existing = ModelCard.load(path)
    ours, theirs = card.data.to_dict(), existing.data.to_dict()
    merged = {**theirs, **{key: value for key, value in ours.items() if value is not None}}
    if theirs.get("license"):
        merged["license"] = theirs["license"]
    merged["tags"] = sorted(set(theirs.get("tags") or []) | set(ours.get("tags") or []))
    existing.data = type(card.data)(**merged)
    return existing


__all__ = ["push_model_to_hub"]
