"""`pointclip segment FILE --object chair --parts back,seat,leg --out parts.ply`: zero-shot part segmentation of a
cloud, written as a coloured PLY, optionally with a picture of the views coloured by part."""

from ..model.prompts import comma_separated
from ._options import CommandError, add_point_options


def add_parser(commands) -> None:
    command = commands.add_parser("segment", help="zero-shot part segmentation of a point-cloud file")
    command.add_argument("file", help="a point-cloud or mesh file")
    command.add_argument("--object", help="what the object is (e.g. chair); a ShapeNetPart category presets --parts")
    command.add_argument("--parts", help="comma-separated part names (at least 2)")
    command.add_argument("--out", required=True, help="output .ply, a colour per part")
    command.add_argument("--views", help="also write the views coloured by part to this .png")
    command.add_argument("--part-prompts", help="JSON file, folder or Hub repo of sentences per part")
    command.add_argument(
        "--prompt-template",
        action="append",
        help="a template with {} for the part and {object} for the object (repeatable)",
    )
    command.add_argument("--view-weights", help="10 comma-separated weights (default: the model's or the preset's)")
    command.add_argument(
        "--official-lookup",
        action="store_true",
        help="read the reference's transposed pixels (for comparison with its figures only)",
    )
    command.add_argument("--scrambled-patch-tokens", action="store_true",
                         help="score the reference's scrambled patch tokens (its saved-feature bug; with "
                              "--official-lookup, its end-to-end behaviour; for comparison only)")  # fmt: skip
    add_segmentation_model_options(command)
    add_point_options(command, sampling=False)
    command.set_defaults(run=run)


def add_segmentation_model_options(command) -> None:
    from ._options import DEFAULT_MODEL

    command.add_argument("--model", default=DEFAULT_MODEL, help="CLIP or PointCLIP checkpoint: Hub id or folder")
    command.add_argument("--device", help="e.g. cpu, cuda")


def load_segmentation_model(args):
    from ..model.modeling_pointclip_part_segmentation import PointCLIPForZeroShotPartSegmentation

    model = PointCLIPForZeroShotPartSegmentation.from_pretrained(args.model, up_axis=getattr(args, "up_axis", None))
    return model.to(args.device) if args.device else model


def run(args) -> int:
    from ..io import load_point_cloud
    from ..model.feature_extraction_pointclip import file_up_axis
    from ..part_segmentation.prompts import load_part_prompts

    parts, view_weights = _parts_and_weights(args)
    part_prompts = load_part_prompts(args.part_prompts, args.object) if args.part_prompts else None
    points = load_point_cloud(args.file)
    args.up_axis = args.up_axis or file_up_axis(args.file)  # the points are passed on as an array, which is y up
    model = load_segmentation_model(args)
    result = model.segment(points, parts=parts, object_name=args.object, part_prompts=part_prompts,
                           prompt_templates=args.prompt_template, view_weights=view_weights,
                           transposed_lookup=args.official_lookup,
                           scrambled_patch_tokens=args.scrambled_patch_tokens)  # fmt: skip
    _write_outputs(args, model, points, result)
    return 0


def _parts_and_weights(args) -> tuple[list[str], list[float] | None]:
    from ..part_segmentation.presets import SHAPENET_PART_NAMES, part_preset

    weights = [float(w) for w in comma_separated(args.view_weights, "--view-weights")] if args.view_weights else None
    if args.parts:
        return comma_separated(args.parts, "--parts"), weights
    if args.object in SHAPENET_PART_NAMES:
        preset = part_preset(args.object)
        return list(preset.parts), weights or list(preset.view_weights)
    raise CommandError("--parts is required (no preset for this --object).")


def _write_outputs(args, model, points, result) -> None:
    import numpy as np

    from ..part_segmentation.visualization import part_legend, part_views_image, save_image, write_part_ply

    write_part_ply(args.out, points, result["label_ids"], result["parts"])
    counts = np.bincount(result["label_ids"], minlength=len(result["parts"]))
    print(f"Wrote {len(points)} points of {args.file} to {args.out}; parts (id name r g b: points):")
    for line, count in zip(part_legend(result["parts"]), counts):
        print(f"  {line}: {count}")
    if args.views:
        views = _render(model, points, args.up_axis, args.official_lookup)
        save_image(part_views_image(views.images[0], views.pixels[0], views.visible[0], result["label_ids"],
                                    result["parts"]), args.views)  # fmt: skip
        print(f"Wrote the views coloured by part to {args.views}")


def _render(model, points, up_axis: str, transposed_lookup: bool):
    import torch

    from ..model.feature_extraction_pointclip import normalize_to_unit_sphere, turn_y_up
    from ..model.projection_part_segmentation import render_part_views

    cloud = normalize_to_unit_sphere(turn_y_up(torch.as_tensor(points[:, :3], dtype=torch.float32)[None], up_axis))
    size = model.config.clip_config.vision_config.image_size
    return render_part_views(cloud, image_size=size, transposed_lookup=transposed_lookup)
