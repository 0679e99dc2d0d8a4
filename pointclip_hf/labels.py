"""The label rules, in one place: which candidate labels are usable, whether their prompts encode them distinctly,
and whether they fit a trained adapter.

A label is any non-empty string; what decides whether two labels are told apart is what the model reads, the token
ids of their prompts ([`check_labels_encode_distinctly`]), not a rule of ours. CLIP's tokenizer applies NFC, turns
every run of whitespace into one space (a no-break or ideographic space included) and lowercases, so `Cup`/`cup` or
`teddy bear` spelt with a space and with a no-break space tie; `straße`/`strasse`, `ς`/`σ`, a BOM, a bidi mark or an
emoji ZWJ sequence give distinct tokens and are accepted.
"""

from collections.abc import Iterable


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
    """`label` as one line of text for tables, images and terminal output: characters that do not print (line breaks,
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
    if labels is None:
        raise ValueError("No labels given: pass candidate labels as a list of strings or a comma-separated string.")
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",")]
    if isinstance(labels, (set, frozenset, dict, bytes)) or not isinstance(labels, Iterable):  # sets have no order
        raise TypeError(f"Labels must be a list of strings or a comma-separated string, got a {type(labels).__name__}.")
    labels = list(labels)
    if not labels:
        raise ValueError("The label list is empty: give at least one candidate label.")
    not_strings = [label for label in labels if not isinstance(label, str)]
    if not_strings:
        raise TypeError(f"Labels must be strings, got {not_strings[:5]!r}.")
    empty = [label for label in labels if not label.replace("_", " ").strip()]  # prompts read "_" as a space
    if empty:
        raise ValueError(f"Labels must be non-empty strings (not only whitespace or underscores), got {empty!r}.")
    _raise_on_shared_keys(labels, labels, "are the same string")
    return labels


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
    for row, owner in zip(rows, tokens["prompt_class_ids"].tolist()):
        if special.issuperset(row):
            raise ValueError(
                f"The tokenizer cannot encode the prompt of label {labels[owner]!r}: it gives only special or unknown "
                "tokens (a CLIP folder saved without its tokenizer files?); load a model whose folder holds them."
            )
    sequences = [[] for _ in labels]
    for row, owner in zip(rows, tokens["prompt_class_ids"].tolist()):
        sequences[owner].append(tuple(row))
    _raise_on_shared_keys(labels, [tuple(sequence) for sequence in sequences], "give the same prompt tokens")


def _raise_on_shared_keys(labels: list[str], keys: list, how: str) -> None:
    first_with_key = {}
    for label, key in zip(labels, keys):
        if key in first_with_key:
            raise ValueError(
                f"The label list contains duplicates: {first_with_key[key]!r} and {label!r} {how}, so they would "
                "always tie; merge or rename them."
            )
        first_with_key[key] = label


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
