"""The `pointclip` subcommands, one module each: `add_parser(subparsers)` declares it, `run(args)` runs it."""

from . import (
    cache,
    classify,
    demo,
    ensemble,
    evaluate,
    evaluate_parts,
    index,
    push,
    render,
    retrieve,
    search,
    search_parts,
    segment,
    train,
)

COMMANDS = [
    classify,
    evaluate,
    train,
    cache,
    push,
    search,
    ensemble,
    render,
    segment,
    evaluate_parts,
    search_parts,
    index,
    retrieve,
    demo,
]
