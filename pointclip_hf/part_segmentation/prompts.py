"""Per-part prompt libraries: `{part: [sentences]}`, or `{object: {part: [sentences]}}` (the layout of PointCLIP V2's
`shapenetpart_700.json`), from a JSON file, a folder or a Hub repo."""

import os

from ..model.prompts import read_prompt_file


def load_part_prompts(path_or_repo: str | os.PathLike, object_name: str | None = None, filename: str = "prompts.json",
                      **hub_kwargs) -> dict[str, list[str]]:  # fmt: skip
    r"""
    Load the sentences per part of one object.

    Args:
        path_or_repo (`str` or `os.PathLike`):
            A JSON file, a folder holding `filename`, or a Hub repo id (`hub_kwargs` go to `hf_hub_download`, e.g.
            `repo_type="dataset"`).
        object_name (`str`, *optional*):
            Which object's entry to take from a per-object library (required for one).
        filename (`str`, *optional*, defaults to `"prompts.json"`):
            The file inside a folder or repo.

    Returns:
        `dict[str, list[str]]`: sentences per part.
    """
    library, path = read_prompt_file(path_or_repo, filename, **hub_kwargs)
    return _object_entry(library, object_name, path)


def _object_entry(library, object_name: str | None, path: str) -> dict[str, list[str]]:
    if not isinstance(library, dict) or not library:
        raise ValueError(f"Part prompt file {path} must hold a non-empty JSON object.")
    if all(isinstance(value, dict) for value in library.values()):
        if object_name not in library:
            raise ValueError(f"Part prompt file {path} has entries for {sorted(library)}, not for {object_name!r}.")
        library = library[object_name]
    if not all(isinstance(s, list) and s and all(isinstance(x, str) for x in s) for s in library.values()):
        raise ValueError(f"Part prompt file {path} must map each part to a non-empty list of sentences.")
    return library
