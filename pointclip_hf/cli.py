"""The `pointclip` command line: one subcommand per module of `pointclip_hf.commands`.

Conventions, as `hf` and `transformers` users expect: `--version`; `-q/--quiet` (before or after the subcommand)
silences progress bars (ours, `datasets`', `transformers`' and the Hub's) and library logging below errors; every help
text shows its default; `HF_HUB_DISABLE_PROGRESS_BARS=1` silences our bars too; a warning prints as one line; a
failure prints one line, `pointclip COMMAND: error: ...`, and exits with 2 for a usage or input error (bad argument,
missing or malformed file, unknown model) and 1 for any other failure (network, Hub, disk, out of memory); Ctrl-C
prints `pointclip COMMAND: interrupted` and exits with 130, keeping what was written (resumable outputs resume).
"""

import argparse
import contextlib
import sys
import warnings

from . import __version__
from .commands import COMMANDS
from .commands._options import CommandParser, integer_at_least


def build_parser() -> argparse.ArgumentParser:
    description = "CLIP for 3D point clouds (PointCLIP, PointCLIP V2)."
    parser = argparse.ArgumentParser(prog="pointclip", description=description)
    parser.add_argument("--version", action="version", version=f"pointclip_hf {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    parser.add_argument("--threads", type=integer_at_least(1), help=THREADS_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    for command_parser in subparsers.choices.values():
        command_parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                                    help="no progress bars, only warnings and errors")  # fmt: skip
        command_parser.add_argument("--threads", type=integer_at_least(1), default=argparse.SUPPRESS,
                                    help=THREADS_HELP)  # fmt: skip
    return parser


THREADS_HELP = (
    "CPU threads: clouds computed at once, each on one thread (default: torch's, one per core); results do not depend "
    "on it"
)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    with warnings.catch_warnings(), _quiet() if args.quiet else contextlib.nullcontext():
        warnings.showwarning = _show_warning_in_one_line
        try:
            return args.run(args)
        except KeyboardInterrupt:
            from .commands._errors import report_interrupt

            return report_interrupt(args.command)
        except Exception as error:  # noqa: BLE001 - every failure ends in one line and an exit code
            from .commands._errors import report_failure  # huggingface_hub's errors: loaded only on a failure

            return report_failure(args.command, error)


def _show_warning_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"pointclip: warning: {category.__name__}: {text}", file=file or sys.stderr)


@contextlib.contextmanager
def _quiet():
    """No progress bars (ours, the Hub's, `datasets`' and `transformers`') and no library logging below errors, for
    the duration of the command; everything is restored after."""
    import datasets
    import huggingface_hub
    import transformers

    hub_logger, transformers_logging = huggingface_hub.utils.logging, transformers.utils.logging
    saved = (hub_logger.get_verbosity(), datasets.logging.get_verbosity(), transformers_logging.get_verbosity(),
             datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())  # fmt: skip
    with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS=0 outranks --quiet, as the Hub documents
        warnings.simplefilter("ignore")
        bars = huggingface_hub.utils.disable_progress_bars()
    for logger in (hub_logger, datasets.logging, transformers_logging):
        logger.set_verbosity_error()
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        bars.__exit__(None, None, None)
        for logger, level in zip((hub_logger, datasets.logging, transformers_logging), saved):
            logger.set_verbosity(level)
        if saved[3]:
            datasets.enable_progress_bars()
        if saved[4]:
            transformers_logging.enable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
