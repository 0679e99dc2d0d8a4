"""The `pointclip` command line."""

import argparse
import json
import os
import sys

from huggingface_hub.errors import StrictDataclassError

from .processing_pointclip import processor_for_model

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
    if getattr(args, "max_images_per_batch", None) is not None:
        model.config.max_images_per_batch = args.max_images_per_batch
        model.config.validate_adapter()
    if getattr(args, "device", None):
        model = model.to(args.device)
    return model.compile_image_tower() if getattr(args, "compile", False) else model


def _label_list(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def load_dataset_arg(args, split: str):
    """The `--dataset` of a command as a `datasets.Dataset`."""
    from .data import load_point_cloud_dataset

    return load_point_cloud_dataset(
        args.dataset, split=split, points_column=args.points_column, label_column=args.label_column
    )


def classify(args) -> int:
    import os

    from .labels import check_labels

    model = load_model(args)
    if args.labels is None and not model.config.label_names:
        raise CommandError("--labels is required for a zero-shot model (only trained adapters know their classes).")
    labels = check_labels(_label_list(args.labels) if args.labels is not None else model.config.label_names)
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


def _validation_split(args, dataset):
    """`--validation-split NAME` of the dataset, or a stratified `--validation-fraction` carved from `dataset`."""
    from .data import train_validation_split

    if args.validation_split:
        return dataset, load_dataset_arg(args, args.validation_split)
    return train_validation_split(dataset, args.validation_fraction, seed=args.seed)


def train(args) -> int:
    from .data import class_names_of, few_shot_subset
    from .training import TrainingConfig, build_few_shot_model, train_adapter

    if args.shots < 1:
        raise CommandError(f"--shots must be at least 1, got {args.shots}.")
    pool, validation = _validation_split(args, load_dataset_arg(args, args.split))
    few_shot = few_shot_subset(pool, args.shots, seed=args.seed, replace=args.replace)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            augment=not args.no_augment, seed=args.seed, progress=True)
    model = build_few_shot_model(args.model, class_names_of(pool), projection_style=args.projection or
                                 "pointclip_v1_fewshot", seed=args.seed)
    result = train_adapter(model, few_shot, validation, config=config, output_dir=args.output_dir)
    model.save_pretrained(args.output_dir)
    processor_for_model(model).save_pretrained(args.output_dir)
    dataset_name = None if os.path.exists(args.dataset) else args.dataset  # a local folder is no public metadata
    card = dict(training=config.to_dict(), dataset_name=dataset_name, shots=args.shots)
    from .model_card import build_model_card

    build_model_card(model, **card).save(f"{args.output_dir}/README.md")
    print(f"best validation accuracy {result.best_validation_accuracy} at epoch {result.best_epoch}; "
          f"adapter saved in {args.output_dir}")
    if args.push_to_hub:
        commit = model.push_to_hub(args.push_to_hub, **card)
        print(f"pushed to {commit.repo_url}")
    return 0


def push(args) -> int:
    from .modeling_pointclip import PointCLIPModel

    model = PointCLIPModel.from_pretrained(args.folder)  # loads and checks the adapter against its base CLIP
    card = {}
    for name, key in (("training_result.json", "training"), ("report.json", "evaluation")):
        path = os.path.join(args.folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                card[key] = json.load(handle)
    commit = model.push_to_hub(args.repo, private=args.private, **card)
    print(f"pushed {args.folder} to {commit.repo_url}")
    return 0


def search(args) -> int:
    import json
    import os

    from .prompts import load_class_prompts
    from .tuning import tune_on_validation

    if not args.prompts and args.no_weights:
        raise CommandError("Nothing to search: give --prompts, or drop --no-weights.")
    model = load_model(args)
    _, validation = _validation_split(args, load_dataset_arg(args, args.split))
    fixed = {int(k): float(v) for k, v in (item.split("=") for item in args.fix.split(","))} if args.fix else None
    summary = tune_on_validation(
        model, validation, prompt_library=load_class_prompts(args.prompts) if args.prompts else None,
        search_weights=not args.no_weights, grid=[float(g) for g in args.grid.split(",")], fixed=fixed,
        batch_size=args.batch_size,
    )
    model.save_pretrained(args.output_dir)
    processor_for_model(model).save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "search.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    for what in ("prompts", "view_weights"):
        if what in summary:
            found = summary[what]
            print(f"{what}: validation accuracy {found['baseline_accuracy']:.4f} -> {found['accuracy']:.4f}")
    print(f"view weights {model.config.view_weights}; tuned model saved in {args.output_dir}")
    return 0


def ensemble(args) -> int:
    import json
    import os

    from .tuning import ensemble_logits, load_logits, pointclip_logits, search_ensemble_weight

    model = load_model(args)
    validation = load_dataset_arg(args, args.validation_split)
    logits, labels = pointclip_logits(model, validation, batch_size=args.batch_size)
    found = search_ensemble_weight(logits, load_logits(args.validation_logits), labels)
    summary = {"alpha": found.alpha, "validation": {"ensemble": found.accuracy, "pointclip": found.pointclip_accuracy,
                                                    "other": found.other_accuracy}}
    print(f"alpha {found.alpha:.2f}: validation accuracy {found.accuracy:.4f} "
          f"(PointCLIP {found.pointclip_accuracy:.4f}, other {found.other_accuracy:.4f})")
    if args.test_split:
        if not args.test_logits:
            raise CommandError("--test-split needs --test-logits (the other network's logits on that split).")
        test_logits, test_labels = pointclip_logits(model, load_dataset_arg(args, args.test_split), args.batch_size)
        combined = ensemble_logits(test_logits, load_logits(args.test_logits), found.alpha)

        def accuracy(scores):
            return float((scores.argmax(-1) == test_labels).double().mean())

        summary["test"] = {"ensemble": accuracy(combined), "pointclip": accuracy(test_logits)}
        print(f"test accuracy {summary['test']['ensemble']:.4f} (PointCLIP alone {summary['test']['pointclip']:.4f})")
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "ensemble.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
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
    parser = argparse.ArgumentParser(
        prog="pointclip", description="CLIP for 3D point clouds (PointCLIP, PointCLIP V2)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def model_options(command):
        command.add_argument("--model", default=DEFAULT_MODEL, help="PointCLIP or CLIP checkpoint: Hub id or folder.")
        command.add_argument("--projection", choices=["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"],
                             help="projection style (for a plain CLIP checkpoint)")
        command.add_argument("--device", help="e.g. cpu, cuda, cuda:1")
        command.add_argument("--dtype", choices=["fp32", "bf16", "fp16"])
        command.add_argument("--max-images-per-batch", type=int,
                             help="depth images per image-tower call (default 8 on CPU, 128 on GPU)")
        command.add_argument("--compile", action="store_true", help="torch.compile the image tower")

    def dataset_options(command):
        command.add_argument("--dataset", required=True,
                             help="modelnet40, scanobjectnn, a Hub dataset id, an h5 folder or a class-folder tree")
        command.add_argument("--points-column", help="column holding the points (default: detected)")
        command.add_argument("--label-column", help="column holding the labels (default: detected)")

    command = commands.add_parser("classify", help="zero-shot (or few-shot) classification of point-cloud files")
    command.add_argument("files", nargs="+", help="point-cloud or mesh files (.npy .ply .pcd .off .obj .stl ...)")
    command.add_argument("--labels", help="comma-separated candidate labels (default: a trained adapter's classes)")
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

    def validation_options(command):
        command.add_argument("--split", default="train", help="the split to draw from")
        command.add_argument("--validation-split", help="a dataset split to validate on (default: carve one)")
        command.add_argument("--validation-fraction", type=float, default=0.2,
                             help="share of each class carved from --split for validation")
        command.add_argument("--seed", type=int, default=2)

    command = commands.add_parser("train", help="few-shot training of the inter-view adapter (CLIP frozen)")
    dataset_options(command)
    validation_options(command)
    command.add_argument("--shots", type=int, default=16, help="training examples per class")
    command.add_argument("--replace", action="store_true", help="sample with replacement for classes with < shots")
    command.add_argument("--output-dir", required=True)
    command.add_argument("--epochs", type=int, default=250)
    command.add_argument("--batch-size", type=int, default=32)
    command.add_argument("--learning-rate", type=float, default=0.01)
    command.add_argument("--no-augment", action="store_true", help="no scale/shift augmentation (caches features)")
    command.add_argument("--push-to-hub", metavar="REPO", help="upload the adapter, configs and card here")
    model_options(command)
    command.set_defaults(run=train)

    command = commands.add_parser("push", help="upload a trained folder (adapter, configs, model card) to the Hub")
    command.add_argument("folder")
    command.add_argument("repo")
    command.add_argument("--private", action="store_true")
    command.set_defaults(run=push)

    command = commands.add_parser("search", help="tune prompts and view weights on a validation split")
    dataset_options(command)
    validation_options(command)
    command.add_argument("--prompts", help="JSON prompt library {class: [sentence, ...]}: a file or Hub repo")
    command.add_argument("--no-weights", action="store_true", help="skip the view-weight search")
    command.add_argument("--grid", default="0.25,0.5,0.75,1.0", help="candidate view weights")
    command.add_argument("--fix", help="views with fixed weights, e.g. 0=0.75,1=0.75,2=0.75 (as PointCLIP V2)")
    command.add_argument("--batch-size", type=int, default=32)
    command.add_argument("--output-dir", required=True, help="where the tuned model is saved")
    model_options(command)
    command.set_defaults(run=search)

    command = commands.add_parser("ensemble", help="mix PointCLIP with another classifier's logits")
    dataset_options(command)
    command.add_argument("--validation-split", required=True, help="split the mixing weight is searched on")
    command.add_argument("--validation-logits", required=True, help=".npy/.npz/.safetensors logits on that split")
    command.add_argument("--test-split", help="split to report the ensemble on")
    command.add_argument("--test-logits", help="the other network's logits on the test split")
    command.add_argument("--batch-size", type=int, default=32)
    command.add_argument("--output-dir", default="pointclip-ensemble")
    model_options(command)
    command.set_defaults(run=ensemble)

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
