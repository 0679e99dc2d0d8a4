"""The `pointclip` command line: one subcommand per module of `pointclip_hf.commands`."""

import argparse
import sys

from .commands import COMMANDS
from .commands._errors import report_failure


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
    except Exception as error:  # noqa: BLE001 - every failure ends in one line and an exit code (2: bad input)
        return report_failure(args.command, error)


if __name__ == "__main__":
    sys.exit(main())
