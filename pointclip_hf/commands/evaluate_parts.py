"""`pointclip evaluate-parts --dataset DIR`: zero-shot part segmentation on ShapeNetPart h5 files, instance and
category mIoU."""

import json

from ..model.prompts import comma_separated
from .segment import add_segmentation_model_options, load_segmentation_model


def add_parser(commands) -> None:
    command = commands.add_parser("evaluate-parts", help="part-segmentation mIoU on ShapeNetPart h5 files")
    command.add_argument("--dataset", required=True, help="folder of ShapeNetPart *_{split}*.h5 files")
    command.add_argument("--split", default="test", help="the split to evaluate")
    command.add_argument("--categories", help="comma-separated categories (default: all 16)")
    command.add_argument("--limit", type=int, help="at most this many shapes (the first ones)")
    command.add_argument("--official-lookup", action="store_true", help="the reference's transposed pixels")
    command.add_argument(
        "--scrambled-patch-tokens",
        action="store_true",
        help="the reference's scrambled patch tokens (its saved-feature bug)",
    )
    command.add_argument(
        "--model-view-weights",
        action="store_true",
        help="use the model's view weights instead of the reference's per-category ones",
    )
    command.add_argument("--part-prompts", help="JSON file of {category: {part: [sentences]}}")
    command.add_argument("--output", help="also write the report as JSON here")
    add_segmentation_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..atomic_files import write_file_atomically
    from ..part_segmentation.data import load_shapenet_part
    from ..part_segmentation.evaluation import evaluate_part_segmentation

    categories = comma_separated(args.categories, "--categories") if args.categories else None
    dataset = load_shapenet_part(args.dataset, args.split, categories)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    part_prompts = _load_library(args.part_prompts) if args.part_prompts else None
    report = evaluate_part_segmentation(load_segmentation_model(args), dataset, transposed_lookup=args.official_lookup,
                                        scrambled_patch_tokens=args.scrambled_patch_tokens,
                                        reference_view_weights=not args.model_view_weights,
                                        part_prompts=part_prompts, progress=True)  # fmt: skip
    print(f"instance mIoU {100 * report.instance_miou:.2f}, category mIoU {100 * report.category_miou:.2f} "
          f"on {len(report.shape_ious)} shapes")  # fmt: skip
    for name, iou in report.category_ious.items():
        print(f"  {name:12s} {100 * iou:.2f}")
    if args.output:
        write_file_atomically(args.output, json.dumps(report.to_dict(), indent=2).encode("utf-8"))
    return 0


def _load_library(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        library = json.load(handle)
    if not isinstance(library, dict) or not all(isinstance(entry, dict) for entry in library.values()):
        raise ValueError(f"--part-prompts {path} must map each category to {{part: [sentences]}}.")
    return library
