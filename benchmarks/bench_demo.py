"""What one request of the Gradio demo costs, and how much of it is the demo rather than the model.

    python benchmarks/bench_demo.py                 # the tests' tiny CLIP: the demo's own overhead stands out
    python benchmarks/bench_demo.py --arch vit-b16  # a random ViT-B/16-size CLIP (writes ~600 MB to a temp folder)

For each projection, the median over `--repeats` runs of:

- `classify`: `model.classify(FILE, labels)`, what `pointclip classify` runs;
- `page`: `classify_file` (classify, then the prepared cloud and its captioned depth-view grid) plus the Plotly figure
  and its JSON, i.e. all the work of the page's handler;
- `round trip`: the `/classify` endpoint through `gradio_client` on 127.0.0.1 (upload, queue, handler, outputs).

Offline; the labels are cached after the warm-up run, as they are in a running demo.
"""

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from transformers import CLIPConfig, CLIPModel  # noqa: E402

from pointclip_hf.commands._options import PROJECTIONS  # noqa: E402
from pointclip_hf.demo import DemoModels, build_demo, classify_file, point_cloud_figure  # noqa: E402
from pointclip_hf.testing_utils import build_tiny_clip, build_tiny_tokenizer  # noqa: E402

CLOUD = str(Path(__file__).resolve().parent.parent / "examples" / "mug.npy")
LABELS = "cup, table, teddy bear, chair, airplane, lamp"


def build_checkpoint(arch: str, folder: Path) -> None:
    if arch == "tiny":
        clip = build_tiny_clip()
    else:
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=16)  # fmt: skip
        text = dict(vocab_size=514, bos_token_id=512, eos_token_id=513, pad_token_id=513)
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512))
    clip.save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)


def median_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(models: DemoModels, client, projection: str, repeats: int) -> tuple[float, float, float]:
    """Median milliseconds of `classify`, the page's handler work and the endpoint's round trip for `projection`."""
    from gradio_client import handle_file

    model, labels = models.get(projection), [label.strip() for label in LABELS.split(",")]
    classify = median_ms(lambda: model.classify(CLOUD, labels), repeats)
    page = median_ms(lambda: point_cloud_figure(classify_file(models, CLOUD, LABELS, projection).points).to_json(),
                     repeats)  # fmt: skip
    trip = median_ms(lambda: client.predict(handle_file(CLOUD), LABELS, projection, api_name="/classify"), repeats)
    return classify, page, trip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "vit-b16"], default="tiny")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as folder:
        build_checkpoint(args.arch, Path(folder))
        models = DemoModels(folder)
        demo = build_demo(models, examples=[])
        _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False)
        print(f"{args.arch} CLIP, {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}")
        print(f"{'projection':<22}{'classify ms':>12}{'page ms':>10}{'round trip ms':>15}{'demo share':>12}")
        for projection in PROJECTIONS:
            classify, page, trip = measure(models, client, projection, args.repeats)
            print(f"{projection:<22}{classify:>12.1f}{page:>10.1f}{trip:>15.1f}{1 - classify / trip:>12.0%}")
        demo.close()


if __name__ == "__main__":
    main()
