"""`pointclip demo [--model ID_OR_PATH] [--port N]`: the Gradio demo in the browser."""

from ..model.choices import DTYPE_CHOICES
from ._options import DEFAULT_MODEL, CommandError, add_point_options


def add_parser(commands) -> None:
    command = commands.add_parser("demo", help='serve the Gradio demo (needs pip install "pointclip_hf[demo]")')
    command.add_argument("--model", default=DEFAULT_MODEL,
                         help=f"CLIP or PointCLIP checkpoint: Hub id or folder (default: {DEFAULT_MODEL})")  # fmt: skip
    command.add_argument("--port", type=int, help="port to serve on (default: 7860, or the next free one)")
    command.add_argument("--host", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    command.add_argument("--device", help="e.g. cpu, cuda (default: cpu)")
    command.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                         help="auto: bfloat16 where the CPU or GPU computes it natively, else float32")  # fmt: skip
    add_point_options(command)
    command.set_defaults(run=run)


def run(args) -> int:
    from ..demo import import_gradio, launch_demo

    try:
        import_gradio()
    except ImportError as error:
        raise CommandError(str(error)) from None
    launch_demo(args.model, port=args.port, host=args.host, device=args.device, dtype=args.dtype,
                sampling=args.sampling, up_axis=args.up_axis)  # fmt: skip
    return 0
