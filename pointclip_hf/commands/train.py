"""`pointclip train`: few-shot training of the inter-view adapter (CLIP frozen), optionally pushed to the Hub."""

import os

from ._options import (
    add_dataset_options,
    add_model_options,
    add_validation_options,
    integer_at_least,
    load_dataset_arg,
    validation_split,
)


def add_parser(commands) -> None:
    command = commands.add_parser("train", help="few-shot training of the inter-view adapter (CLIP frozen)")
    add_dataset_options(command)
    add_validation_options(command)
    command.add_argument("--shots", type=integer_at_least(1), default=16, help="training examples per class")
    command.add_argument("--replace", action="store_true", help="sample with replacement for classes with < shots")
    command.add_argument(
        "--output-dir",
        required=True,
        help="where the checkpoints (resumed from), the best adapter and its card are written",
    )
    command.add_argument("--epochs", type=int, default=250, help="passes over the few-shot set")
    command.add_argument("--batch-size", type=int, default=32, help="clouds per optimiser step")
    command.add_argument("--learning-rate", type=float, default=0.01, help="SGD learning rate after the warm-up epoch")
    command.add_argument("--no-augment", action="store_true", help="no scale/shift augmentation (caches features)")
    command.add_argument("--push-to-hub", metavar="REPO", help="upload the adapter, configs and card here")
    command.add_argument("--no-resume", action="store_true",
                         help="start afresh instead of resuming from --output-dir/checkpoint")  # fmt: skip
    add_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..data import class_names_of, few_shot_subset
    from ..training import TrainingConfig, build_few_shot_model, train_adapter

    pool, validation = validation_split(args, load_dataset_arg(args, args.split))
    few_shot = few_shot_subset(pool, args.shots, seed=args.seed, replace=args.replace)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            augment=not args.no_augment, seed=args.seed, progress=True)  # fmt: skip
    model = build_few_shot_model(args.model, class_names_of(pool), projection_style=args.projection or
                                 "pointclip_v1_fewshot", seed=args.seed, sampling=args.sampling,
                                 up_axis=args.up_axis)  # fmt: skip
    result = train_adapter(model, few_shot, validation, config=config, output_dir=args.output_dir,
                           resume=not args.no_resume)  # fmt: skip
    card = _save_with_card(model, args, config)
    print(f"best validation accuracy {result.best_validation_accuracy} at epoch {result.best_epoch}; "
          f"adapter saved in {args.output_dir}")  # fmt: skip
    if args.push_to_hub:
        commit = model.push_to_hub(args.push_to_hub, **card)
        print(f"pushed to {commit.repo_url}")
    return 0


def _save_with_card(model, args, config) -> dict:
    """Save the model, its processor and its card in `--output-dir`; return the card arguments."""
    from ..model.processing_pointclip import processor_for_model
    from ..model_card import build_model_card

    model.save_pretrained(args.output_dir)
    processor_for_model(model).save_pretrained(args.output_dir)
    dataset_name = None if os.path.exists(args.dataset) else args.dataset  # a local folder is no public metadata
    card = dict(training=config.to_dict(), dataset_name=dataset_name, shots=args.shots)
    build_model_card(model, **card).save(os.path.join(args.output_dir, "README.md"))
    return card
