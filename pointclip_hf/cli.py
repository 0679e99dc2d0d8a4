"""The `pointclip` command line: one subcommand per module of `pointclip_hf.commands`."""

import argparse
import sys

from huggingface_hub.errors import StrictDataclassError

from .commands import COMMANDS
from .commands._options import CommandError


def build_parser() -> argparse.ArgumentParser:
    description = "CLIP for 3D point clouds (PointCLIP, PointCLIP V2)."
    parser = argparse.ArgumentParser(prog="pointclip", description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ValueError, TypeError, OSError, StrictDataclassError) as error:
        print(f"pointclip {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
