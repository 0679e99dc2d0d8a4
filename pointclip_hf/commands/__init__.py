"""The `pointclip` subcommands, one module each: `add_parser(subparsers)` declares it, `run(args)` runs it."""

from . import classify, demo, ensemble, evaluate, push, render, search, train

COMMANDS = [classify, evaluate, train, push, search, ensemble, render, demo]
