"""`pointclip classify FILE...`: zero-shot (or few-shot) classification of point-cloud files."""

import json
import os

from ..model.prompts import comma_separated
from ._options import CommandError, add_model_options, is_main_process, load_model


def add_parser(commands) -> None:
    command = commands.add_parser("classify", help="zero-shot (or few-shot) classification of point-cloud files")
    command.add_argument("files", nargs="+", help="point-cloud or mesh files (.npy .ply .pcd .off .obj .stl ...)")
    command.add_argument("--labels", help="comma-separated candidate labels (default: a trained adapter's classes)")
    command.add_argument("--top-k", type=int, help="labels printed per file (default: all)")
    command.add_argument("--batch-size", type=int, default=32, help="clouds rendered and encoded at once")
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument("--output", help="also write JSON lines here, incrementally (resumes an interrupted run)")
    command.add_argument("--no-resume", action="store_true", help="with --output: start afresh instead of resuming")
    command.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the files")
    command.add_argument("--test-time-cache", action="store_true",
                         help="adapt to the files as they come (TDA caches): a file's scores then depend on the files "
                              "before it, outside the batch-invariance guarantee")  # fmt: skip
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..model.prompts import check_labels

    missing = [path for path in args.files if not os.path.exists(path)]
    if missing:
        raise CommandError(f"No such file or folder: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if args.labels is not None:
        check_labels(comma_separated(args.labels, "--labels"))
    model = load_model(args)
    if args.labels is None and not model.config.label_names:
        raise CommandError("--labels is required for a zero-shot model (only trained adapters know their classes).")
    given = comma_separated(args.labels, "--labels") if args.labels is not None else None
    labels = check_labels(given if given is not None else model.config.label_names)
    files, results = _classify(model, args, labels)
    if not is_main_process():
        return 0
    _print_results(files, results, args.json, model)
    return 0


def _classify(model, args, labels) -> tuple[list[str], list[list[dict]]]:
    """Classify with [`classify_files`]; a progress bar is shown for long runs (a folder, `--output` or workers)."""
    from ..evaluation import classify_files

    folder = any(os.path.isdir(path) for path in args.files)
    long_run = bool(folder or args.output or args.num_workers)
    records = classify_files(model, args.files[0] if len(args.files) == 1 else list(args.files), labels,
                             batch_size=args.batch_size, num_workers=args.num_workers, output_path=args.output,
                             top_k=args.top_k, progress=long_run and not args.json,
                             resume=not args.no_resume, test_time_cache=args.test_time_cache)  # fmt: skip
    files = [record["path"] for record in records] if folder else list(args.files)
    return files, [record["top_k"] for record in records]


def _print_results(files: list[str], results: list[list[dict]], as_json: bool, model) -> None:
    if as_json:
        from ..model.choices import dtype_name
        from ..onnx_image_tower import image_tower_backend

        run = {"dtype": dtype_name(model.dtype), "backend": image_tower_backend(model)}
        print(json.dumps([{"file": f, **run, "predictions": r} for f, r in zip(files, results)], indent=2))
        return
    from ..model.prompts import display_label

    for path, predictions in zip(files, results):
        ranked = ", ".join(f"{display_label(p['label'])} {p['score']:.3f}" for p in predictions)
        print(f"{os.fsencode(path).decode(errors='replace')}: {ranked}")  # a non-UTF-8 file name shows as U+FFFD
