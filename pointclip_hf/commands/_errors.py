"""How a `pointclip` command ends on an error: one line on stderr, `pointclip COMMAND: error: ...`, and exit code 2 for
a usage or input error (the user can fix the command: a bad argument, a missing or malformed file, an unknown model)
or 1 for any other failure (network, Hub, disk, out of memory, a bug). Ctrl-C ends it with one line and exit code 130,
as shells report a SIGINT; what was written so far is kept (commands with resumable output continue from it)."""

import errno
import sys

from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    StrictDataclassError,
)

from ._options import CommandError

EXIT_INPUT_ERROR = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
INPUT_ERRORS = (CommandError, ValueError, TypeError, StrictDataclassError)
MISSING_ON_THE_HUB = (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, HFValidationError)
_INPUT_ERRNOS = {None, errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}


def exit_code_for(error: BaseException) -> int:
    """2 for a usage or input error, 1 for any other failure."""
    if isinstance(error, MISSING_ON_THE_HUB):
        return EXIT_INPUT_ERROR
    if isinstance(error, (HfHubHTTPError, ConnectionError, TimeoutError, MemoryError)) or _is_network_error(error):
        return EXIT_FAILURE
    if isinstance(error, INPUT_ERRORS):
        return EXIT_INPUT_ERROR
    if isinstance(error, OSError) and error.errno in _INPUT_ERRNOS:
        return EXIT_INPUT_ERROR
    return EXIT_FAILURE


def error_line(error: BaseException) -> str:
    """The message of `error` on one line (for an error raised again from a DataLoader worker, the worker's own), with
    its type named unless it is one of the documented input errors."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if "Original Traceback (most recent call last):" in lines:
        return lines[-1]
    message = " ".join(lines) or type(error).__name__
    known = isinstance(error, (*INPUT_ERRORS, OSError))
    return message if known else f"{type(error).__name__}: {message}"


def report_failure(command: str, error: BaseException) -> int:
    """Print `error` as one line naming `command`; return the exit code."""
    print(f"pointclip {command}: error: {error_line(error)}", file=sys.stderr)
    return exit_code_for(error)


def report_interrupt(command: str) -> int:
    """Print that `command` was interrupted (Ctrl-C), as one line; return the exit code."""
    print(f"pointclip {command}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _is_network_error(error: BaseException) -> bool:
    try:
        import httpx
    except ImportError:
        return False
    return isinstance(error, httpx.HTTPError)
