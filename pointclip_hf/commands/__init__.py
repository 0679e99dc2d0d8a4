"""The `pointclip` subcommands, one module each: `add_parser(subparsers)` declares it, `run(args)` runs it."""

from . import classify, ensemble, evaluate, index, push, render, retrieve, search, train

COMMANDS = [classify, evaluate, train, push, search, ensemble, render, index, retrieve]
