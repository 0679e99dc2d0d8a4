"""`pointclip ensemble`: mix PointCLIP with another classifier's logits, the weight searched on validation."""

import json
import os

from ._options import CommandError, add_dataset_options, add_model_options, load_dataset_arg, load_model


def add_parser(commands) -> None:
    command = commands.add_parser("ensemble", help="mix PointCLIP with another classifier's logits")
    add_dataset_options(command)
    command.add_argument("--validation-split", required=True, help="split the mixing weight is searched on")
    command.add_argument("--validation-logits", required=True, help=".npy/.npz/.safetensors logits on that split")
    command.add_argument("--test-split", help="split to report the ensemble on")
    command.add_argument("--test-logits", help="the other network's logits on the test split")
    command.add_argument("--batch-size", type=int, default=32, help="clouds rendered and encoded at once")
    command.add_argument("--output-dir", default="pointclip-ensemble", help="where ensemble.json is written")
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..tuning import load_logits, pointclip_logits, search_ensemble_weight

    if args.test_split and not args.test_logits:
        raise CommandError("--test-split needs --test-logits (the other network's logits on that split).")
    other_logits = load_logits(args.validation_logits)
    other_test_logits = load_logits(args.test_logits) if args.test_logits else None
    validation = load_dataset_arg(args, args.validation_split)
    model = load_model(args)
    logits, labels = pointclip_logits(model, validation, batch_size=args.batch_size)
    found = search_ensemble_weight(logits, other_logits, labels)
    summary = {"alpha": found.alpha, "validation": {"ensemble": found.accuracy, "pointclip": found.pointclip_accuracy,
                                                    "other": found.other_accuracy}}  # fmt: skip
    print(f"alpha {found.alpha:.2f}: validation accuracy {found.accuracy:.4f} "
          f"(PointCLIP {found.pointclip_accuracy:.4f}, other {found.other_accuracy:.4f})")  # fmt: skip
    if args.test_split:
        summary["test"] = _test_accuracies(model, args, other_test_logits, found.alpha)
        print(f"test accuracy {summary['test']['ensemble']:.4f} (PointCLIP alone {summary['test']['pointclip']:.4f})")
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "ensemble.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return 0


def _test_accuracies(model, args, other_test_logits, alpha: float) -> dict:
    from ..tuning import ensemble_logits, pointclip_logits

    test_logits, test_labels = pointclip_logits(model, load_dataset_arg(args, args.test_split), args.batch_size)
    combined = ensemble_logits(test_logits, other_test_logits, alpha)

    def accuracy(scores):
        return float((scores.argmax(-1) == test_labels).double().mean())

    return {"ensemble": accuracy(combined), "pointclip": accuracy(test_logits)}
