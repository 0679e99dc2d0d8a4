"""Telling a local path from a Hub repo id, so that a missing folder is reported as missing and not as a bad repo id."""

import os


def looks_like_local_path(source: str) -> bool:
    """Whether `source` is written as a local path: absolute, `./`, `../` or `~`, or with more than one `/` (a Hub repo
    id has at most one)."""
    return os.path.isabs(source) or source.startswith(("./", "../", "~", ".\\")) or source.count("/") > 1


def check_local_path_exists(source: str, what: str) -> None:
    """Raise a `FileNotFoundError` naming `what` when `source` is written as a local path that does not exist."""
    if looks_like_local_path(source) and not os.path.exists(os.path.expanduser(source)):
        raise FileNotFoundError(f"No such {what}: {source}.")
