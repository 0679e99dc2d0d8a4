"""What the `pointclip` commands share: the error type, common options and how they load a model or a dataset."""

import argparse
import os
import sys

from ..model.choices import CLASSIFICATION_STYLES, DTYPE_CHOICES, PROJECTION_STYLES, SAMPLING_METHODS, UP_AXES

CLASSIFICATION_PROJECTIONS = list(CLASSIFICATION_STYLES)
PROJECTIONS = list(PROJECTION_STYLES)
DEFAULT_MODEL = "openai/clip-vit-base-patch16"


class CommandError(Exception):
    """A problem with the command's arguments or inputs: reported in one line, exit code 2."""


def integer_at_least(minimum: int):
    """
    An argparse `type` for an integer option of at least `minimum`: a smaller value is the option's usage error.

    Args:
        minimum (`int`):
            The smallest accepted value.
    """

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type so in "invalid int value: 'x'"
    return parse


class CommandParser(argparse.ArgumentParser):
    """The parser of a subcommand: every option with a default says it in its help text."""

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        shown = not unset and action.help != argparse.SUPPRESS
        if shown and "%(default)" not in (action.help or ""):
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        return action


def add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", default=DEFAULT_MODEL, help="PointCLIP or CLIP checkpoint: Hub id or folder.")
    command.add_argument("--projection", choices=CLASSIFICATION_PROJECTIONS,
                         help="projection style (default: a PointCLIP checkpoint's own; for a plain CLIP "
                              "checkpoint pointclip_v1, and pointclip_v1_fewshot in train)")  # fmt: skip
    command.add_argument("--device", help="e.g. cpu, cuda, cuda:1")
    command.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                         help="auto: bfloat16 where the CPU or GPU computes it natively (same top-1, scores within "
                              "about 0.03), else float32; float32 reproduces the official numbers")  # fmt: skip
    command.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="run CLIP's image tower in torch or ONNX Runtime (float32, needs the [onnx] extra)",
    )
    command.add_argument(
        "--max-images-per-batch",
        type=int,
        help="depth images per image-tower call, whole clouds (default: one cloud on CPU, 128 on GPU)",
    )
    command.add_argument("--compile", action="store_true", help="torch.compile the image tower")
    add_point_options(command)


def add_point_options(command: argparse.ArgumentParser, sampling: bool = True) -> None:
    """`--up-axis` and (with `sampling`) `--sampling`: how clouds are read, whatever the model."""
    if sampling:
        command.add_argument("--sampling", choices=SAMPLING_METHODS,
                             help="which points the model sees: random (a seeded subset, whatever order the file "
                                  "stores them in), fps (farthest-point, slow on large clouds) or first (the "
                                  "reference's, for pre-shuffled data such as ModelNet) (default: the saved "
                                  "processor's, else random)")  # fmt: skip
    command.add_argument("--up-axis", choices=UP_AXES,
                         help="the axis that points up in the clouds (a negative one as --up-axis=-z); the "
                              "model sees it as y (default: the file format's convention, z for .las/.laz, "
                              "else y)")  # fmt: skip


def add_dataset_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--dataset",
        required=True,
        help="modelnet40, scanobjectnn, a Hub dataset id, an h5 folder or a class-folder tree",
    )
    command.add_argument("--points-column", help="column holding the points (default: detected)")
    command.add_argument("--label-column", help="column holding the labels (default: detected)")


def add_validation_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--split", default="train", help="the split to draw from")
    command.add_argument("--validation-split", help="a dataset split to validate on (default: carve one)")
    command.add_argument(
        "--validation-fraction", type=float, default=0.2, help="share of each class carved from --split for validation"
    )
    command.add_argument("--seed", type=int, default=2, help="seed of the validation split and the few-shot draw")


def load_model(args):
    """The model named by `--model`, with `--projection`, `--dtype`, `--device`, `--backend`, `--compile`,
    `--sampling` and `--up-axis` applied."""
    import torch

    from ..dtype_policy import resolve_dtype
    from ..model.choices import dtype_name
    from ..model.modeling_pointclip import PointCLIPModel

    overrides = {"projection_style": args.projection} if getattr(args, "projection", None) else {}
    requested = getattr(args, "dtype", None)
    if getattr(args, "backend", "torch") == "onnxruntime" and requested == "auto":
        requested = "float32"  # the exported image tower computes in float32 only
    dtype = resolve_dtype(requested, getattr(args, "device", None))
    point_options = {key: getattr(args, key, None) for key in ("sampling", "up_axis")}
    model = PointCLIPModel.from_pretrained(args.model, dtype=dtype, **overrides, **point_options)
    if not getattr(args, "quiet", False):
        official = "" if model.dtype == torch.float32 else "; --dtype float32 gives the official numbers"
        print(f"Computing in {dtype_name(model.dtype)} (--dtype {args.dtype}{official}).", file=sys.stderr)
    if getattr(args, "max_images_per_batch", None) is not None:
        model.config.max_images_per_batch = args.max_images_per_batch
        model.config.validate_fields()
    if getattr(args, "device", None):
        model = model.to(args.device)
    if getattr(args, "backend", "torch") == "onnxruntime":
        return _onnx_backend(model, args)
    return model.compile_image_tower() if getattr(args, "compile", False) else model


def _onnx_backend(model, args):
    from ..onnx_image_tower import use_onnx_image_tower

    if getattr(args, "compile", False):
        raise CommandError("--compile applies to the torch backend, not to --backend onnxruntime.")
    try:
        return use_onnx_image_tower(model)
    except (ImportError, TypeError) as error:
        raise CommandError(f"--backend onnxruntime: {error}") from None


def load_dataset_arg(args, split: str):
    """The `--dataset` of a command as a `datasets.Dataset`."""
    from ..data import load_point_cloud_dataset

    return load_point_cloud_dataset(
        args.dataset, split=split, points_column=args.points_column, label_column=args.label_column
    )


def validation_split(args, dataset):
    """`--validation-split NAME` of the dataset, or a stratified `--validation-fraction` carved from `dataset`."""
    from ..data import train_validation_split

    if args.validation_split:
        return dataset, load_dataset_arg(args, args.validation_split)
    return train_validation_split(dataset, args.validation_fraction, seed=args.seed)


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"
