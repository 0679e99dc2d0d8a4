"""Prompts: the reference templates, our template sets for depth maps, and per-class prompt libraries.

A label becomes one or more sentences: the sentences of its entry in a class-prompt library when there is one,
otherwise every template formatted with the label (underscores read as spaces, as the reference does). The model
encodes each sentence, normalises it, averages the sentences of a label and normalises again (CLIP's ensembling).
"""

import json
import os
import string

from .local_paths import check_local_path_exists

# The template each reference configuration uses: `CUSTOM_TEMPLATES` of the official `trainers/zeroshot.py` and
# `trainers/fewshot.py` (V1), of `zeroshot_cls/trainers/zeroshot.py` and of the V2 few-shot code.
DEFAULT_TEMPLATES = {
    "pointclip_v1": ("point cloud depth map of a {}.",),
    "pointclip_v1_fewshot": ("point cloud of a big {}.",),
    "pointclip_v2": ("An obscure grayscale depth map of an inclined rough {} 3D model.",),
    # Ours: the reference segments with searched LLM sentences only. "{object}" is the object's name.
    "pointclip_v2_part_segmentation": (
        "a grayscale depth map of the {} of a {object}.",
        "the {} part of a {object} 3D model, seen as a depth image.",
        "a rough gray rendering of a {object}, showing its {}.",
    ),
}

# Ensembles of our own wording. V1 maps are raw depth on black; V2 maps are dark shapes on white.
TEMPLATE_SETS = {
    "pointclip_v1": (
        "point cloud depth map of a {}.",
        "a depth map of a {}.",
        "a rendered depth image of a {}.",
        "a black background depth map of the {}.",
        "a sparse point cloud of a {}.",
        "a 3D scan of a {}, seen as a depth map.",
        "a noisy depth image of a small {}.",
        "a grayscale depth render of a {}.",
    ),
    "pointclip_v2": (
        "An obscure grayscale depth map of an inclined rough {} 3D model.",
        "a grayscale silhouette of a {} on a white background.",
        "a dark depth map of a {} 3D model.",
        "a blurry gray rendering of a {}.",
        "a shaded 3D model of a {} in gray.",
        "a monochrome depth image of a {}, viewed from an angle.",
        "a rough gray sketch of a {} shape.",
        "a smooth gray {} object on a white background.",
    ),
}
TEMPLATE_SETS["pointclip_v1_fewshot"] = TEMPLATE_SETS["pointclip_v1"]


def check_prompt_template(template, what: str = "Prompt template", object_field: bool = False) -> str:
    """Return `template`, or raise a `ValueError` unless it is a string with exactly one plain `{}` for the label and no
    other replacement field (`"a {} of {x}"` would fail when formatted), except `{object}` when `object_field` (the
    part-segmentation templates name the object the parts belong to)."""
    if not isinstance(template, str):
        raise ValueError(f"{what} must be a string with one '{{}}' for the label, got {template!r}.")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]  # fmt: skip
    except ValueError as error:
        raise ValueError(f"{what} {template!r} is not a valid format string ({error}).") from None
    allowed = ("", "object") if object_field else ("",)
    plain = [field for field in fields if field[1:] == ("", None) and field[0] in allowed]
    if len(plain) != len(fields) or [name for name, _, _ in fields].count("") != 1:
        raise ValueError(f"{what} {template!r} must contain exactly one '{{}}' for the label and no other '{{...}}'.")
    return template


def build_prompts(labels, templates, class_prompts=None) -> tuple[list[str], list[int]]:
    """Sentences for `labels`, and for each sentence the index of the label it belongs to."""
    sentences, owners = [], []
    for index, label in enumerate(labels):
        if class_prompts and label in class_prompts:
            label_sentences = class_prompts[label]
        else:
            label_sentences = [template.format(label.replace("_", " ")) for template in templates]
        sentences.extend(label_sentences)
        owners.extend([index] * len(label_sentences))
    return sentences, owners


def read_prompt_file(path_or_repo: str | os.PathLike, filename: str = "prompts.json", **hub_kwargs) -> tuple:
    """
    Read a JSON prompt file: a local file, a folder holding `filename`, or `filename` in a Hub repo.

    Args:
        path_or_repo (`str` or `os.PathLike`):
            Where the file is.
        filename (`str`, *optional*, defaults to `"prompts.json"`):
            The file inside a folder or repo.
        hub_kwargs:
            For `hf_hub_download`, e.g. `repo_type="dataset"`, `revision=...`.

    Returns:
        `tuple`: the parsed JSON and the local path it was read from.
    """
    path = os.fspath(path_or_repo)
    check_local_path_exists(path, "prompt file")
    if not os.path.exists(path):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(path, filename, **hub_kwargs)
    elif os.path.isdir(path):
        path = os.path.join(path, filename)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), path
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"Prompt file {path} is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError(f"Prompt file {path} is nested too deeply to be a prompt library.") from None


def load_class_prompts(path_or_repo: str | os.PathLike, filename: str = "prompts.json", **hub_kwargs) -> dict:
    """Load a `{class: [sentence, ...]}` JSON file from a local path, or `filename` from a Hub repository
    (`hub_kwargs` go to `hf_hub_download`, e.g. `repo_type="dataset"`, `revision=...`)."""
    library, path = read_prompt_file(path_or_repo, filename, **hub_kwargs)
    if not isinstance(library, dict) or not all(
        isinstance(sentences, list) and sentences and all(isinstance(s, str) for s in sentences)
        for sentences in library.values()
    ):
        raise ValueError(f"Prompt file {path} must map each class name to a non-empty list of sentences.")
    return library


def check_class_prompts(class_prompts: dict, labels) -> None:
    """Raise if a prompt library does not cover every label."""
    missing = [label for label in labels if label not in class_prompts]
    if missing:
        raise ValueError(f"The prompt library has no sentences for classes {missing}.")
