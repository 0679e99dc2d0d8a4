"""`pointclip cache build`: a few-shot cache head (Tip-Adapter) from support clouds, its alpha and beta searched on a
validation split, optionally fine-tuned (Tip-Adapter-F), saved with its model card and optionally pushed to the Hub."""

import argparse
import os

from ._options import (
    CommandError,
    CommandParser,
    add_dataset_options,
    add_model_options,
    add_validation_options,
    integer_at_least,
    load_dataset_arg,
    load_model,
    validation_split,
)


def add_parser(commands) -> None:
    command = commands.add_parser("cache", help="few-shot cache heads (Tip-Adapter): `pointclip cache build ...`")
    actions = command.add_subparsers(
        dest="cache_command", required=True, parser_class=CommandParser, help="what to do with a cache"
    )
    build = actions.add_parser("build", help="build a cache head from K-shot support clouds (training-free)")
    add_dataset_options(build)
    add_validation_options(build)
    build.add_argument("--shots", type=integer_at_least(1), default=16, help="support clouds per class")
    build.add_argument("--output-dir", required=True, help="where the model (cache, config, processor, card) goes")
    build.add_argument("--alpha", type=float, help="use this alpha (with --beta) instead of searching on validation")
    build.add_argument("--beta", type=float, help="use this beta (with --alpha) instead of searching on validation")
    build.add_argument("--fine-tune-epochs", type=integer_at_least(0), default=0,
                       help="then train the keys for this many epochs at alpha = beta = 1 and search alpha and beta "
                            "again (Tip-Adapter-F; 0: training-free)")  # fmt: skip
    build.add_argument("--learning-rate", type=float, default=0.001, help="SGD learning rate of the fine-tuning")
    build.add_argument("--batch-size", type=int, default=32, help="clouds per step of the fine-tuning")
    build.add_argument("--push-to-hub", metavar="REPO", help="upload the cache, configs and card here")
    build.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars, only warnings and errors")  # fmt: skip
    add_model_options(build)
    build.set_defaults(run=run_build)


def run_build(args) -> int:
    from ..data import few_shot_subset

    if (args.alpha is None) != (args.beta is None):
        raise CommandError("--alpha and --beta go together (or give neither, to search them on validation).")
    pool, validation = validation_split(args, load_dataset_arg(args, args.split))
    support = few_shot_subset(pool, args.shots, seed=args.seed)
    model = load_model(args)
    search = args.alpha is None
    model.build_cache(support, shots=None, seed=args.seed, validation=validation, search=search,
                      alpha=args.alpha or 0.0, beta=args.beta or 0.0, batch_size=args.batch_size)  # fmt: skip
    _describe_splits(model, args, len(validation))
    if args.fine_tune_epochs:
        _fine_tune(model, support, validation, args, search)
    card = _save_with_card(model, args)
    search_info = model.config.cache_info["search"] or {}
    print(f"cache of {model.config.cache_size} clouds, alpha {model.config.cache_alpha:g}, beta "
          f"{model.config.cache_beta:g}, validation accuracy {search_info.get('validation_accuracy', '-')} "
          f"(without the cache {search_info.get('validation_accuracy_without_cache', '-')}); saved in "
          f"{args.output_dir}")  # fmt: skip
    if args.push_to_hub:
        commit = model.push_to_hub(args.push_to_hub, **card)
        print(f"pushed to {commit.repo_url}")
    return 0


def _describe_splits(model, args, validation_size: int) -> None:
    """Record in `config.cache_info` where the support and validation clouds came from (for the model card)."""
    info = dict(model.config.cache_info)
    info["support"] = f"{args.shots} per class of the {args.split!r} split of {args.dataset}"
    if args.validation_split:
        source = f"the {args.validation_split!r} split of {args.dataset}"
    else:
        source = f"carved from the {args.split!r} split ({args.validation_fraction:g} of every class, seed {args.seed})"
    info["validation"] = {"source": source, "size": validation_size}
    model.config.cache_info = info


def _fine_tune(model, support, validation, args, search: bool) -> None:
    """Tip-Adapter-F: train the keys (values fixed) with the few-shot loop at alpha = beta = 1 (Tip-Adapter-F trains
    at its initial values), then search alpha and beta again."""
    from ..cache_building import search_cache_on_validation
    from ..training import TrainingConfig, train_adapter

    model.config.cache_alpha = model.config.cache_beta = 1.0
    config = TrainingConfig(epochs=args.fine_tune_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            augment=False, seed=args.seed, progress=True)  # fmt: skip
    result = train_adapter(model, support, validation, config=config)
    info = dict(model.config.cache_info)
    info["fine_tuning"] = {"epochs": args.fine_tune_epochs, "learning_rate": args.learning_rate,
                           "best_epoch": result.best_epoch,
                           "best_validation_accuracy": result.best_validation_accuracy}  # fmt: skip
    model.config.cache_info = info
    if search:
        search_cache_on_validation(model, validation, batch_size=args.batch_size)
        model.config.cache_info["validation"] = info["validation"]


def _save_with_card(model, args) -> dict:
    """Save the model, its processor and its card in `--output-dir`; return the card arguments."""
    from ..model.processing_pointclip import processor_for_model
    from ..model_card import build_model_card

    model.save_pretrained(args.output_dir)
    processor_for_model(model).save_pretrained(args.output_dir)
    dataset_name = None if os.path.exists(args.dataset) else args.dataset  # a local folder is no public metadata
    card = dict(dataset_name=dataset_name, shots=args.shots)
    build_model_card(model, **card).save(os.path.join(args.output_dir, "README.md"))
    return card
