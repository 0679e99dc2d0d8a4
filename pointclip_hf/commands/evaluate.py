"""`pointclip evaluate`: accuracy on a labelled dataset, with a report, predictions and a confusion matrix."""

from ._options import add_dataset_options, add_model_options, is_main_process, load_dataset_arg, load_model


def add_parser(commands) -> None:
    command = commands.add_parser("evaluate", help="accuracy on a labelled dataset, with a report and confusion matrix")
    add_dataset_options(command)
    command.add_argument("--split", default="test", help="the split to evaluate")
    command.add_argument(
        "--output-dir",
        default="pointclip-evaluation",
        help="where predictions.jsonl (resumed from), report.json and confusion_matrix.png go",
    )
    command.add_argument("--batch-size", type=int, default=32, help="clouds rendered and encoded at once")
    command.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the clouds")
    command.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming")
    command.add_argument("--test-time-cache", action="store_true",
                         help="adapt to the clouds as they come (TDA caches): a cloud's result then depends on the "
                              "clouds before it, outside the batch-invariance guarantee")  # fmt: skip
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..evaluation import evaluate
    from ..model.prompts import display_label

    dataset = load_dataset_arg(args, args.split)
    model = load_model(args)
    report = evaluate(model, dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                      output_dir=args.output_dir, resume=not args.no_resume,
                      test_time_cache=args.test_time_cache)  # fmt: skip
    if is_main_process():
        print(f"accuracy {report.accuracy:.4f} on {report.num_samples} clouds "
              f"(mean class accuracy {report.mean_class_accuracy:.4f})")  # fmt: skip
        for name, accuracy in report.per_class_accuracy.items():
            print(f"  {display_label(name):24s} {'-' if accuracy is None else f'{accuracy:.4f}'}")
        setup = report.setup
        print(f"projection {setup.get('projection_style')}, view weights {setup.get('view_weights')}, "
              f"prompts {setup.get('prompt_templates')}, dtype {setup.get('dtype')}, "
              f"image tower {setup['runtime']['image_tower_backend']}")  # fmt: skip
        print(f"report, predictions and confusion matrix in {args.output_dir}")
    return 0
