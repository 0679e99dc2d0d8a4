"""`pointclip render FILE --out views.png`: the depth views of a cloud as a picture."""

from ._options import PROJECTIONS, add_point_options


def add_parser(commands) -> None:
    command = commands.add_parser("render", help="write the depth views of a cloud as a PNG grid")
    command.add_argument("file", help="a point-cloud or mesh file")
    command.add_argument("--out", required=True, help="output .png")
    command.add_argument(
        "--projection",
        choices=PROJECTIONS,
        default="pointclip_v1",
        help="projection style (pointclip_v2_part_segmentation: the views `segment` reads)",
    )
    command.add_argument("--num-points", type=int, default=1024, help="points kept from the cloud")
    command.add_argument("--no-normalize", action="store_true", help="keep the coordinates as they are")
    add_point_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..model.choices import DEFAULT_SAMPLING
    from ..model.feature_extraction_pointclip import PointCLIPFeatureExtractor
    from ..model.projection import render_views
    from ..visualization import projection_views_image

    processor = PointCLIPFeatureExtractor(
        projection_style=args.projection, num_points=args.num_points, normalize=not args.no_normalize,
        sampling=args.sampling or DEFAULT_SAMPLING, up_axis=args.up_axis,
    )  # fmt: skip
    views = render_views(processor.prepare_points(args.file), processor.projection_style)[0]
    projection_views_image(views, processor.projection_style).save(args.out)
    print(f"Wrote {views.shape[0]} {processor.projection_style} views of {args.file} to {args.out}")
    return 0
