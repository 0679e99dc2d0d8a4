"""How a `pointclip` command ends on an error: one line on stderr, exit code 2 for bad input, 1 for anything else."""

import sys

from huggingface_hub.errors import StrictDataclassError

from ._options import CommandError

INPUT_ERRORS = (CommandError, ValueError, TypeError, OSError, StrictDataclassError)
INPUT_ERROR_EXIT_CODE = 2
RUNTIME_ERROR_EXIT_CODE = 1


def error_line(error: BaseException) -> str:
    """The message of `error` on one line; for an error raised again from a DataLoader worker, the original one."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if "Original Traceback (most recent call last):" in lines and lines:
        return lines[-1].partition(": ")[2] or lines[-1]
    return " ".join(lines) or type(error).__name__


def report_failure(command: str, error: Exception) -> int:
    """Print `error` as one line naming `command` and return the exit code: 2 for bad input, 1 otherwise."""
    if isinstance(error, INPUT_ERRORS):
        print(f"pointclip {command}: error: {error_line(error)}", file=sys.stderr)
        return INPUT_ERROR_EXIT_CODE
    print(f"pointclip {command}: failed: {type(error).__name__}: {error_line(error)}", file=sys.stderr)
    return RUNTIME_ERROR_EXIT_CODE
