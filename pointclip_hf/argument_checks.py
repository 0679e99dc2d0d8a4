"""The check of integer arguments (batch sizes, counts, `top_k`) that the public functions share."""

from __future__ import annotations

_KINDS = {0: "a non-negative integer", 1: "a positive integer"}


def check_counts(counts: dict, minimum: int = 1, optional: tuple[str, ...] = (), prefix: str = "") -> None:
    """
    Raise one `ValueError`, naming the argument, on the first value that is not an integer of at least `minimum`.

    Args:
        counts (`dict[str, int]`):
            Argument names and their values, checked in order; a `bool` is not an integer here.
        minimum (`int`, *optional*, defaults to 1):
            The smallest allowed value, 0 or 1.
        optional (`tuple[str, ...]`, *optional*, defaults to `()`):
            The names that may also be `None`.
        prefix (`str`, *optional*, defaults to `""`):
            Put before the name in the message, such as `"TrainingConfig."`.
    """
    for name, value in counts.items():
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            allowed = _KINDS[minimum] + (" or None" if name in optional else "")
            raise ValueError(f"{prefix}{name} must be {allowed}, got {value!r}.")
