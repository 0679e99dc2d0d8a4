"""Prompts: the reference templates, our template sets for depth maps, and per-class prompt libraries.

A label becomes one or more sentences: the sentences of its entry in a class-prompt library when there is one,
otherwise every template formatted with the label (underscores read as spaces, as the reference does). The model
encodes each sentence, normalises it, averages the sentences of a label and normalises again (CLIP's ensembling).

It also holds the label rules (`check_labels` and the checks a label set meets) and the check that a path written as
a local one exists.
"""

import json
import os
import string
from collections.abc import Iterable

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
    problem = _template_problem(template, ("", "object") if object_field else ("",))
    if problem:
        raise ValueError(f"{what} {problem}.")
    return template


def _template_problem(template, allowed: tuple[str, ...]) -> str | None:
    """What makes `template` unusable (the end of a sentence naming it), or `None`."""
    if not isinstance(template, str):
        return f"must be a string with one '{{}}' for the label, got {template!r}"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]  # fmt: skip
    except ValueError as error:
        return f"{template!r} is not a valid format string ({error})"
    plain = [field for field in fields if field[1:] == ("", None) and field[0] in allowed]
    if len(plain) != len(fields) or [name for name, _, _ in fields].count("") != 1:
        return f"{template!r} must contain exactly one '{{}}' for the label and no other '{{...}}'"
    return None


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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        problem = "is nested too deeply to be a prompt library." if isinstance(error, RecursionError) else (
            f"is not valid JSON: {error}")  # fmt: skip
        raise ValueError(f"Prompt file {path} {problem}") from None


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


def comma_separated(text: str, argument: str) -> list[str]:
    r"""
    The items of a comma-separated argument (`"a, b"` -> `["a", "b"]`), each stripped of surrounding whitespace.

    Args:
        text (`str`):
            The argument's value.
        argument (`str`):
            Its name (e.g. `"--labels"`), for the error message.

    Raises:
        `ValueError` naming `argument` when an item is empty (`"a,,b"`, a trailing comma, only whitespace).
    """
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"{argument} holds an empty item in {text!r}: separate the items with single commas.")
    return items


def display_label(label: str) -> str:
    r"""`label` as one line of text for tables, images and terminal output: characters that do not print (line breaks,
    tabs, other control or format characters) escaped as Python writes them (`"b\\nad"`)."""
    return label if label.isprintable() else repr(label)[1:-1]


def check_labels(labels) -> list[str]:
    """
    Return `labels` as a list of strings, or raise if they are not candidate labels: what can be decided without the
    tokenizer. Labels that differ as strings but give the same prompt tokens are refused later, by
    [`check_labels_encode_distinctly`].

    Args:
        labels (`list[str]` or `str`):
            Candidate labels, or one comma-separated string.

    Raises:
        `ValueError` when `labels` is missing or empty, holds a label that is empty once its prompt reads it (only
        whitespace or underscores) or the same string twice; `TypeError` when it is not a list of strings.
    """
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",")]
    ordered = isinstance(labels, Iterable) and not isinstance(labels, (set, frozenset, dict, bytes))  # sets: no order
    labels = list(labels) if ordered else labels
    problem = next(((error, message) for failed, error, message in _label_checks(labels) if failed), None)
    if problem:
        error, message = problem
        raise error(message)
    return labels


def _label_checks(labels):
    """(failed, error class, message) of each check of `check_labels` (`labels` a list when it was an ordered
    iterable), in order: each is evaluated only when those before it passed."""
    yield (labels is None, ValueError,
           "No labels given: pass candidate labels as a list of strings or a comma-separated string.")  # fmt: skip
    yield (not isinstance(labels, list), TypeError,
           f"Labels must be a list of strings or a comma-separated string, got a {type(labels).__name__}.")  # fmt: skip
    yield not labels, ValueError, "The label list is empty: give at least one candidate label."
    not_strings = [label for label in labels if not isinstance(label, str)]
    yield bool(not_strings), TypeError, f"Labels must be strings, got {not_strings[:5]!r}."
    empty = [label for label in labels if not label.replace("_", " ").strip()]  # prompts read "_" as a space
    yield (bool(empty), ValueError,
           f"Labels must be non-empty strings (not only whitespace or underscores), got {empty!r}.")  # fmt: skip
    duplicates = _shared_key_problem(labels, labels, "are the same string")
    yield bool(duplicates), ValueError, duplicates


def check_labels_encode_distinctly(labels: list[str], tokens: dict, special_ids) -> None:
    """
    Raise unless every label's prompt sentences are tokenised into something other than special tokens, and no two
    labels share all their token sequences (a label cut off past CLIP's 77-token context, or a tokenizer that cannot
    encode the text, such as the empty one transformers builds for a CLIP folder saved without its tokenizer files).

    Args:
        labels (`list[str]`):
            The checked labels.
        tokens (`dict`):
            `input_ids` and `attention_mask` of shape `(prompts, length)` and `prompt_class_ids` of shape `(prompts,)`.
        special_ids (`Iterable[int]`):
            The tokenizer's special and unknown token ids.
    """
    lengths = tokens["attention_mask"].sum(-1).tolist()
    rows = [ids[:length] for ids, length in zip(tokens["input_ids"].tolist(), lengths)]
    special = set(special_ids)
    owners = tokens["prompt_class_ids"].tolist()
    unencodable = next((labels[owner] for row, owner in zip(rows, owners) if special.issuperset(row)), None)
    sequences = [[] for _ in labels]
    for row, owner in zip(rows, owners):
        sequences[owner].append(tuple(row))
    problem = (
        f"The tokenizer cannot encode the prompt of label {unencodable!r}: it gives only special or unknown tokens (a "
        "CLIP folder saved without its tokenizer files?); load a model whose folder holds them."
        if unencodable is not None
        else _shared_key_problem(labels, [tuple(sequence) for sequence in sequences], "give the same prompt tokens")
    )
    if problem:
        raise ValueError(problem)


def _shared_key_problem(labels: list[str], keys: list, how: str) -> str | None:
    """The message naming the first two `labels` whose `keys` are equal (`how` says in what way), else `None`."""
    first_with_key = {}
    for label, key in zip(labels, keys):
        if key in first_with_key:
            return (
                f"The label list contains duplicates: {first_with_key[key]!r} and {label!r} {how}, so they would "
                "always tie; merge or rename them."
            )
        first_with_key[key] = label
    return None


def check_labels_fit_model(labels: list[str], label_names: list[str] | None) -> None:
    """
    Raise unless `labels` can be scored by a model whose adapter was trained on `label_names` (`None`: any labels).
    The adapter's logits follow its training classes, so the candidate labels must be exactly those, in any order.

    Args:
        labels (`list[str]`):
            Checked candidate labels.
        label_names (`list[str]`, *optional*):
            `config.label_names` of the model.
    """
    if label_names is not None and set(labels) != set(label_names):
        raise ValueError(
            f"This model's adapter was trained on the labels {label_names}; use those labels (in any order), "
            f"got {labels}."
        )


def class_ids_to_label_ids(class_names: list[str], label_names: list[str] | None) -> list[int]:
    """
    Map a dataset's class ids to a model's label ids: the same classes in any order are remapped, others refused.

    Args:
        class_names (`list[str]`):
            The dataset's `ClassLabel` names, in class-id order.
        label_names (`list[str]`, *optional*):
            `config.label_names` of the model (`None`: the dataset's own order).

    Returns:
        `list[int]`: for each dataset class id, the model's label id.
    """
    if label_names is None:
        return list(range(len(class_names)))
    check_labels_fit_model(list(class_names), list(label_names))
    return [list(label_names).index(name) for name in class_names]


def looks_like_local_path(source: str) -> bool:
    """Whether `source` is written as a local path: absolute, `./`, `../` or `~`, or with more than one `/` (a Hub repo
    id has at most one)."""
    return os.path.isabs(source) or source.startswith(("./", "../", "~", ".\\")) or source.count("/") > 1


def check_local_path_exists(source: str, what: str) -> None:
    """Raise a `FileNotFoundError` naming `what` when `source` is written as a local path that does not exist."""
    if looks_like_local_path(source) and not os.path.exists(os.path.expanduser(source)):
        raise FileNotFoundError(f"No such {what}: {source}.")
