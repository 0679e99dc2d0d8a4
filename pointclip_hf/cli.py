"""The `pointclip` command line."""

import argparse
import json
import sys

from huggingface_hub.errors import StrictDataclassError

DEFAULT_MODEL = "openai/clip-vit-base-patch16"


class CommandError(Exception):
    """A problem with the command's arguments or inputs: reported in one line, exit code 2."""


def _dtype(name: str | None):
    import torch

    return {None: None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def load_model(args):
    """The model named by `--model`, with `--projection`, `--dtype` and `--device` applied."""
    from .modeling_pointclip import PointCLIPModel

    overrides = {"projection_style": args.projection} if getattr(args, "projection", None) else {}
    model = PointCLIPModel.from_pretrained(args.model, dtype=_dtype(getattr(args, "dtype", None)), **overrides)
    return model.to(args.device) if getattr(args, "device", None) else model


def _label_list(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def load_dataset_arg(args, split: str):
    """The `--dataset` of a command as a `datasets.Dataset`."""
    from .point_cloud_datasets import load_point_cloud_dataset

    return load_point_cloud_dataset(
        args.dataset, split=split, points_column=args.points_column, label_column=args.label_column
    )


def classify(args) -> int:
    import os

    from .prompts import check_labels

    labels = check_labels(_label_list(args.labels))
    model = load_model(args)
    streaming = args.output or args.num_workers or any(os.path.isdir(f) for f in args.files)
    if streaming:  # folders and long lists: stream through a DataLoader, write JSON lines, resume
        from .evaluation import classify_files

        files = args.files[0] if len(args.files) == 1 else list(args.files)
        records = classify_files(model, files, labels, batch_size=args.batch_size, num_workers=args.num_workers,
                                 output_path=args.output, top_k=args.top_k, progress=not args.json)
        args.files = [record["path"] for record in records]
        results = [record["top_k"] for record in records]
        if not _is_main_process():
            return 0
    else:
        results = model.classify(list(args.files), labels, top_k=args.top_k, batch_size=args.batch_size)
    if args.json:
        print(json.dumps([{"file": f, "predictions": r} for f, r in zip(args.files, results)], indent=2))
    else:
        for path, predictions in zip(args.files, results):
            ranked = ", ".join(f"{p['label']} {p['score']:.3f}" for p in predictions)
            print(f"{path}: {ranked}")
    return 0


def evaluate(args) -> int:
    from .evaluation import evaluate as run_evaluation

    model = load_model(args)
    dataset = load_dataset_arg(args, args.split)
    report = run_evaluation(model, dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                            output_dir=args.output_dir, resume=not args.no_resume)
    if _is_main_process():
        print(f"accuracy {report.accuracy:.4f} on {report.num_samples} clouds "
              f"(mean class accuracy {report.mean_class_accuracy:.4f})")
        for name, accuracy in report.per_class_accuracy.items():
            print(f"  {name:24s} {'-' if accuracy is None else f'{accuracy:.4f}'}")
        setup = report.setup
        print(f"projection {setup.get('projection_style')}, view weights {setup.get('view_weights')}, "
              f"prompts {setup.get('prompt_templates')}")
        print(f"report, predictions and confusion matrix in {args.output_dir}")
    return 0


def render(args) -> int:
    from .processing_pointclip import PointCloudProcessor
    from .projection import render_views
    from .visualization import views_to_grid

    processor = PointCloudProcessor(
        projection_style=args.projection or "pointclip_v1", num_points=args.num_points, normalize=not args.no_normalize
    )
    views = render_views(processor.prepare_points(args.file), processor.projection_style)[0]
    views_to_grid(views).save(args.out)
    print(f"Wrote {views.shape[0]} {processor.projection_style} views of {args.file} to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pointclip", description="CLIP for 3D point clouds (PointCLIP, PointCLIP V2).")
    commands = parser.add_subparsers(dest="command", required=True)

    def model_options(command):
        command.add_argument("--model", default=DEFAULT_MODEL, help="PointCLIP or CLIP checkpoint: Hub id or folder.")
        command.add_argument("--projection", choices=["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"],
                             help="projection style (for a plain CLIP checkpoint)")
        command.add_argument("--device", help="e.g. cpu, cuda, cuda:1")
        command.add_argument("--dtype", choices=["fp32", "bf16", "fp16"])

    def dataset_options(command):
        command.add_argument("--dataset", required=True,
                             help="modelnet40, scanobjectnn, a Hub dataset id, an h5 folder or a class-folder tree")
        command.add_argument("--points-column", help="column holding the points (default: detected)")
        command.add_argument("--label-column", help="column holding the labels (default: detected)")

    command = commands.add_parser("classify", help="zero-shot (or few-shot) classification of point-cloud files")
    command.add_argument("files", nargs="+", help="point-cloud or mesh files (.npy .ply .pcd .off .obj .stl ...)")
    command.add_argument("--labels", required=True, help="comma-separated candidate labels")
    command.add_argument("--top-k", type=int, default=None)
    command.add_argument("--batch-size", type=int, default=32)
    command.add_argument("--json", action="store_true", help="print JSON")
    command.add_argument("--output", help="also write JSON lines here, incrementally (resumes an interrupted run)")
    command.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the files")
    model_options(command)
    command.set_defaults(run=classify)

    command = commands.add_parser("evaluate", help="accuracy on a labelled dataset, with a report and confusion matrix")
    dataset_options(command)
    command.add_argument("--split", default="test")
    command.add_argument("--output-dir", default="pointclip-evaluation")
    command.add_argument("--batch-size", type=int, default=32)
    command.add_argument("--num-workers", type=int, default=0)
    command.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming")
    model_options(command)
    command.set_defaults(run=evaluate)

    command = commands.add_parser("render", help="write the depth views of a cloud as a PNG grid")
    command.add_argument("file")
    command.add_argument("--out", required=True, help="output .png")
    command.add_argument("--projection", choices=["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"])
    command.add_argument("--num-points", type=int, default=1024)
    command.add_argument("--no-normalize", action="store_true", help="keep the coordinates as they are")
    command.set_defaults(run=render)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ValueError, TypeError, OSError, StrictDataclassError) as error:
        print(f"pointclip {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
