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
    per_object = isinstance(library, dict) and library and all(isinstance(value, dict) for value in library.values())
    entry = library.get(object_name) if per_object else library
    if (
        not isinstance(entry, dict)
        or not entry
        or not all(isinstance(s, list) and s and all(isinstance(x, str) for x in s) for s in entry.values())
    ):
        missing = per_object and object_name not in library
        rule = "must be a JSON object mapping each part to a non-empty list of sentences"
        problem = f"has entries for {sorted(library)}, not for {object_name!r}" if missing else rule
        raise ValueError(f"Part prompt file {path} {problem}.")
    return entry
