"""The checks of arguments that the public functions share: integers (batch sizes, counts, `top_k`), real numbers in
an interval (weights, fractions) and the settings of a config read from a dict."""

import dataclasses
import math
import numbers

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


def check_numbers(values: dict, low: float = 0, high: float = math.inf, prefix: str = "") -> None:
    """
    Raise one `ValueError`, naming the argument, on the first value that is not a finite real number in `[low, high]`.

    Args:
        values (`dict[str, float]`):
            Argument names and their values, checked in order; a `bool` is not a number here.
        low (`float`, *optional*, defaults to 0):
            The smallest allowed value.
        high (`float`, *optional*, defaults to `math.inf`):
            The largest allowed value (infinity itself is never allowed).
        prefix (`str`, *optional*, defaults to `""`):
            Put before the name in the message.
    """
    for name, value in values.items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and low <= value <= high):
            allowed = f"in [{low}, {high}]" if high < math.inf else f">= {low}"
            raise ValueError(f"{prefix}{name} must be a finite number {allowed}, got {value!r}.")


def check_settings(values: dict, config_class) -> None:
    """
    Raise one `ValueError` naming the keys of `values` that are no field of the dataclass `config_class` (a config read
    from a dict, such as a file).

    Args:
        values (`dict`):
            The settings.
        config_class (`type`):
            The config dataclass.
    """
    names = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"Unknown {config_class.__name__} settings {unknown}; valid ones are {sorted(names)}.")
