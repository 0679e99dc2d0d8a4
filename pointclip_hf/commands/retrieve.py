"""`pointclip retrieve DIR --text "a chair"` / `--like FILE`: the clouds of an index closest to a text or an example."""

import json

from ..model.choices import DTYPE_CHOICES
from ._options import CommandError, add_point_options, integer_at_least


def add_parser(commands) -> None:
    command = commands.add_parser("retrieve", help="the clouds of an index closest to texts or to example clouds")
    command.add_argument("index", metavar="DIR", help="an index folder written by `pointclip index`")
    command.add_argument("--text", action="append", default=[], help="a text query (repeatable)")
    command.add_argument("--like", action="append", default=[], metavar="FILE",
                         help="an example point-cloud or mesh file (repeatable)")  # fmt: skip
    command.add_argument("--top-k", type=integer_at_least(1), default=5, help="results per query")
    command.add_argument("--backend", choices=["auto", "torch", "faiss"], default="auto",
                         help="exact search with torch, or faiss when installed")  # fmt: skip
    command.add_argument("--model", help="the model the index was built with (default: the one it names)")
    command.add_argument("--device", help="e.g. cpu, cuda, cuda:1")
    command.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help="as for classify")
    command.add_argument("--json", action="store_true", help="print JSON")
    add_point_options(command, sampling=False)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..retrieval import PointCloudIndex

    if not args.text and not args.like:
        raise CommandError("give at least one --text or --like query")
    index = PointCloudIndex.load(args.index, backend=args.backend)
    model = _index_model(args, index.header["fingerprint"])
    results = []
    if args.text:
        results += zip(args.text, index.search_text(model, args.text, top_k=args.top_k))
    if args.like:
        results += zip(args.like, index.search_like(model, args.like, top_k=args.top_k))
    _print_results(results, args.json)
    return 0


def _index_model(args, fingerprint: dict):
    """The `--model`, or the model the index names, with the projection and sampling the index was built with, and
    `--up-axis` for the `--like` files."""
    from ..dtype_policy import resolve_dtype
    from ..model.modeling_pointclip import PointCLIPModel

    name = args.model or fingerprint.get("model")
    settings = fingerprint.get("processor", {})
    dtype = resolve_dtype(args.dtype, args.device)
    model = PointCLIPModel.from_pretrained(name, dtype=dtype, projection_style=settings.get("projection_style"),
                                           sampling=settings.get("sampling"), up_axis=args.up_axis)  # fmt: skip
    return model.to(args.device) if args.device else model


def _print_results(results, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"query": query, "results": hits} for query, hits in results], indent=2))
        return
    for query, hits in results:
        print(f"{query}:")
        for hit in hits:
            what = hit.get("path") or f"row {hit['row']}" + (f" ({hit['label']})" if "label" in hit else "")
            print(f"  {hit['rank']:3d}. {hit['score']:.4f}  {what}")
