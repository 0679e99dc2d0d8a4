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
    LocalEntryNotFoundError,
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
HTTP_CLIENTS = ("httpx", "httpx2")  # transport errors of the HTTP clients of datasets and huggingface_hub
_INPUT_ERRNOS = {None, errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}


def exit_code_for(error: BaseException) -> int:
    """2 for a usage or input error, 1 for any other failure (a network failure also when transformers reports it as a
    plain `OSError` caused by one)."""
    if any(_is_network_error(link) for link in _causes(error)):
        return EXIT_FAILURE
    if isinstance(error, MISSING_ON_THE_HUB):
        return EXIT_INPUT_ERROR
    if isinstance(error, (HfHubHTTPError, MemoryError)):
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


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the errors it was raised from, as Python's traceback shows them."""
    chain = [error]
    while True:
        cause = chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)
        if cause is None or cause in chain:
            return chain
        chain.append(cause)


def report_interrupt(command: str) -> int:
    """Print that `command` was interrupted (Ctrl-C), as one line; return the exit code."""
    print(f"pointclip {command}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _is_network_error(error: BaseException) -> bool:
    """A connection that failed or timed out, offline mode refusing one, or the Hub's "cannot reach the Hub and the
    file is not cached" (`LocalEntryNotFoundError`)."""
    if isinstance(error, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
        return True
    clients = [sys.modules.get(name) for name in HTTP_CLIENTS]
    return any(client is not None and isinstance(error, client.TransportError) for client in clients)
