"""`pointclip index FOLDER_OR_DATASET --output DIR`: embed a collection of clouds for `pointclip retrieve`."""

import os

from ._options import add_model_options, is_main_process, load_model


def add_parser(commands) -> None:
    command = commands.add_parser(
        "index", help="embed every cloud of a folder or a dataset into an index folder, for `pointclip retrieve`"
    )
    command.add_argument("source", metavar="FOLDER_OR_DATASET",
                         help="a folder of point-cloud/mesh files (searched recursively), a file, or a dataset "
                              "(modelnet40, scanobjectnn, a Hub dataset id, an h5 folder)")  # fmt: skip
    command.add_argument("--output", required=True, help="the index folder (resumed when it holds an unfinished one)")
    command.add_argument("--split", default="test", help="the split of a dataset")
    command.add_argument("--points-column", help="column holding the points of a dataset (default: detected)")
    command.add_argument("--batch-size", type=int, default=32, help="clouds rendered and encoded at a time")
    command.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the clouds")
    command.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming")
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..retrieval import build_index

    source = _source(args)
    model = load_model(args)
    index = build_index(model, source, args.output, batch_size=args.batch_size, num_workers=args.num_workers,
                        resume=not args.no_resume, progress=not args.quiet)  # fmt: skip
    if is_main_process():
        print(f"indexed {len(index)} clouds into {args.output} ({index.embeds.shape[1]} values each)")
    return 0


def _source(args):
    """The files of a folder or a file as a path; anything else is loaded as a dataset."""
    from ..data import load_point_cloud_dataset
    from ..io import SUPPORTED_EXTENSIONS

    if os.path.isfile(args.source) or (os.path.isdir(args.source) and _holds_clouds(args.source, SUPPORTED_EXTENSIONS)):
        return args.source
    return load_point_cloud_dataset(args.source, split=args.split, points_column=args.points_column)


def _holds_clouds(folder: str, extensions) -> bool:
    return any(name.lower().endswith(extensions) for _, _, names in os.walk(folder) for name in names)
