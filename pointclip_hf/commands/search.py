"""`pointclip search`: tune prompts and view weights on a validation split."""

import json
import os

from ._options import (
    CommandError,
    add_dataset_options,
    add_model_options,
    add_validation_options,
    load_dataset_arg,
    load_model,
    validation_split,
)


def add_parser(commands) -> None:
    command = commands.add_parser("search", help="tune prompts and view weights on a validation split")
    add_dataset_options(command)
    add_validation_options(command)
    command.add_argument("--prompts", help="JSON prompt library {class: [sentence, ...]}: a file or Hub repo")
    command.add_argument("--no-weights", action="store_true", help="skip the view-weight search")
    command.add_argument("--grid", default="0.25,0.5,0.75,1.0", help="candidate view weights")
    command.add_argument("--fix", help="views with fixed weights, e.g. 0=0.75,1=0.75,2=0.75 (as PointCLIP V2)")
    command.add_argument("--batch-size", type=int, default=32, help="clouds rendered and encoded at once")
    command.add_argument("--output-dir", required=True, help="where the tuned model is saved")
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..model.processing_pointclip import processor_for_model
    from ..model.prompts import load_class_prompts
    from ..tuning import tune_on_validation

    if not args.prompts and args.no_weights:
        raise CommandError("Nothing to search: give --prompts, or drop --no-weights.")
    grid, fixed = _grid(args.grid), _fixed(args.fix)
    prompt_library = load_class_prompts(args.prompts) if args.prompts else None
    _, validation = validation_split(args, load_dataset_arg(args, args.split))
    model = load_model(args)
    summary = tune_on_validation(
        model, validation, prompt_library=prompt_library, search_weights=not args.no_weights, grid=grid, fixed=fixed,
        batch_size=args.batch_size,
    )  # fmt: skip
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


def _grid(text: str) -> list[float]:
    """`--grid 0.25,0.5` -> `[0.25, 0.5]`."""
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise CommandError(f"--grid {text!r} must be comma-separated numbers, e.g. 0.25,0.5,0.75,1.0.") from None


def _fixed(text: str | None) -> dict[int, float] | None:
    """`--fix 0=0.75,1=0.75` -> `{0: 0.75, 1: 0.75}`."""
    if not text:
        return None
    fixed = {}
    for item in text.split(","):
        view, _, weight = item.partition("=")
        try:
            fixed[int(view)] = float(weight)
        except ValueError:
            raise CommandError(f"--fix {text!r}: {item!r} is not VIEW=WEIGHT (e.g. 0=0.75,1=0.75).") from None
    return fixed
