"""`pointclip search-parts --dataset DIR --split val --category chair`: PointCLIP V2's part-segmentation searches on a
held-out split of one ShapeNetPart category: the view weights, then (with `--part-prompts`) each part's sentence, by
mean shape IoU. The result goes to `pointclip segment --view-weights` and `--part-prompts`."""

import json

from .search import _grid
from .segment import add_segmentation_model_options, load_segmentation_model


def add_parser(commands) -> None:
    command = commands.add_parser("search-parts", help="search part-segmentation view weights and prompts")
    command.add_argument("--dataset", required=True, help="folder of ShapeNetPart *_{split}*.h5 files")
    command.add_argument("--split", default="val", help="the held-out split to search on (not the one you report)")
    command.add_argument("--category", required=True, help="the ShapeNetPart category, e.g. chair")
    command.add_argument("--limit", type=int, help="at most this many shapes (the first ones)")
    command.add_argument("--grid", default="0.25,0.5,0.75,1.0", help="weights tried for each of views 4-9")
    command.add_argument("--part-prompts", help="candidate sentences: JSON {part: [sentences]} (file, folder or repo)")
    command.add_argument("--official-lookup", action="store_true", help="the reference's transposed pixels")
    command.add_argument(
        "--scrambled-patch-tokens",
        action="store_true",
        help="the reference's scrambled patch tokens (its saved-feature bug)",
    )
    command.add_argument("--output", help="also write the result as JSON here")
    add_segmentation_model_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    import torch

    from ..atomic_files import write_file_atomically
    from ..part_segmentation.data import load_shapenet_part
    from ..part_segmentation.presets import part_preset
    from ..part_segmentation.prompts import load_part_prompts
    from ..part_segmentation.search import encode_part_views, search_part_prompts, search_part_view_weights

    grid, preset = _grid(args.grid), part_preset(args.category)
    library = load_part_prompts(args.part_prompts, args.category) if args.part_prompts else {}
    dataset = load_shapenet_part(args.dataset, args.split, [args.category])
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    rows = list(dataset.with_format("numpy"))
    model = load_segmentation_model(args)
    labels = [row["part_ids"] - preset.first_part_id for row in rows]
    cache = encode_part_views(model, [row["points"] for row in rows], labels, transposed_lookup=args.official_lookup,
                              scrambled_patch_tokens=args.scrambled_patch_tokens, progress=True)  # fmt: skip
    candidates, sentences = _candidates(model, preset, library)
    template_embeds = torch.stack([part_candidates[0] for part_candidates in candidates])
    weights = search_part_view_weights(cache, template_embeds, grid=grid, initial=list(preset.view_weights))
    prompts = search_part_prompts(cache, candidates, weights.view_weights)
    result = {
        "category": preset.category,
        "split": args.split,
        "shapes": len(rows),
        "view_weights": weights.view_weights,
        "baseline_miou": weights.baseline_miou,
        "miou": prompts.miou,
        "part_prompts": {part: [sentences[part][choice]] for part, choice in zip(preset.parts, prompts.choices)
                         if choice > 0},
    }  # fmt: skip
    print(f"mean shape IoU {100 * weights.baseline_miou:.2f} -> {100 * prompts.miou:.2f} on {len(rows)} shapes; "
          f"--view-weights {','.join(f'{w:g}' for w in weights.view_weights)}")  # fmt: skip
    if args.output:
        write_file_atomically(args.output, json.dumps(result, indent=2).encode("utf-8"))
    return 0


def _candidates(model, preset, library: dict) -> tuple[list, dict]:
    """Per part, the embeddings of its template prompt (candidate 0) and of each of its sentences in `library`, and
    the sentence of each candidate (`None` for the template)."""
    import torch

    from ..model.pipeline_pointclip_part_segmentation import part_embeddings

    parts = list(preset.parts)
    unknown = sorted(set(library) - set(parts))
    if unknown:
        raise ValueError(f"--part-prompts names {unknown}, not parts of {preset.category} ({', '.join(parts)}).")
    processor = model.processor
    templates = part_embeddings(model, processor, parts, preset.category)
    candidates, sentences = [], {}
    for index, part in enumerate(parts):
        sentences[part] = [None, *library.get(part, [])]
        embeds = [part_embeddings(model, processor, [part], preset.category, part_prompts={part: [sentence]})
                  for sentence in sentences[part][1:]]  # fmt: skip
        candidates.append(torch.cat([templates[index : index + 1], *embeds]))
    return candidates, sentences
