"""Label-encoding cost on the full-size CLIP text tower (512 wide, 12 layers, 8 heads, random weights): our
`get_text_features` (fixed-shape calls of 16 sentences padded to a multiple of 8 tokens, on the CPU workers; a label's
embedding never depends on the other labels) against one plain batched `CLIPTextModel` call of all the sentences
padded to the longest (in the calling thread, torch's own threads), timed interleaved, medians of `--pairs` rounds.

Label sets: 40 ModelNet40 labels x 8 templates, 100 labels x 1 template, 300 labels x 1 template. Token ids are random
(the cost depends on the lengths only), lengths those of CLIP's BPE for a prompt ensemble of 8 templates: 7 to 14
tokens of template, 1 to 3 of label, plus start and end tokens.

Conditions: `--threads` (default 1 and 2), and with `--busy` one competing busy process (`while True: pass`) beside
the largest thread count. With `--image-batch B` it also times the image side of one batch of `B` V1 clouds
(`get_view_features`, ViT-B/32, random weights) at each condition, the yardstick of the 40 x 8 set.

    python benchmarks/bench_text.py [--sets '40 x 8' '100 x 1' '300 x 1'] [--threads 1 2] [--busy] [--pairs 7]
                                    [--image-batch 32]
"""

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_inference import BOS_ID, EOS_ID, build_clip_config, pointclip_config
from machine import header, interleaved, load_average, median_ratio, write_results

from pointclip_hf import PointCLIPModel
from pointclip_hf.model.cpu_threads import map_on_cpu_threads

TEMPLATE_TOKENS = (7, 9, 10, 12, 8, 11, 14, 9)
LABEL_SETS = {"40 x 8": (40, 8), "100 x 1": (100, 1), "300 x 1": (300, 1)}  # labels, templates


def tokenized(count: int, templates: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask` (right padding) and `prompt_class_ids` of `count` labels x `templates`."""
    generator = torch.Generator().manual_seed(seed)
    label_tokens = torch.randint(1, 4, (count,), generator=generator)
    sentences, owners = [], []
    for label in range(count):
        for template in range(templates):
            length = int(TEMPLATE_TOKENS[template]) + int(label_tokens[label])
            sentences.append([BOS_ID, *torch.randint(1, BOS_ID, (length,), generator=generator).tolist(), EOS_ID])
            owners.append(label)
    longest = max(map(len, sentences))
    input_ids = torch.full((len(sentences), longest), EOS_ID)
    attention_mask = torch.zeros_like(input_ids)
    for row, tokens in enumerate(sentences):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        attention_mask[row, : len(tokens)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "prompt_class_ids": torch.tensor(owners)}


def one_batched_call(model: PointCLIPModel, tokens: dict) -> torch.Tensor:
    """The plain way: every sentence in one text-tower call, then the label means."""
    text = model.clip.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    sentences = F.normalize(model.clip.text_projection(text.pooler_output), dim=-1)
    labels = sentences.new_zeros(int(tokens["prompt_class_ids"].max()) + 1, sentences.shape[-1])
    return F.normalize(labels.index_add_(0, tokens["prompt_class_ids"], sentences), dim=-1)


def measure(model, sets: dict, args, threads: int, busy: bool, images) -> list[dict]:
    torch.set_num_threads(threads)
    map_on_cpu_threads(lambda item: item, [0])
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        rows = []
        for name, tokens in sets.items():
            load_before = load_average()
            runs = {"ours": lambda t=tokens: model.get_text_features(**t),
                    "batched": lambda t=tokens: one_batched_call(model, t)}  # fmt: skip
            times = interleaved(runs, args.pairs)
            rows.append({"labels x templates": name, "sentences": len(tokens["input_ids"]), "threads": threads,
                         "busy_process": busy, "ours_s": statistics.median(times["ours"]),
                         "batched_s": statistics.median(times["batched"]),
                         "ours_over_batched": median_ratio(times["ours"], times["batched"]), "pairs": args.pairs,
                         "load_before": load_before, "load_after": load_average()})  # fmt: skip
            print_rows(rows[-1:])
        if images is not None:
            seconds = interleaved({"image side": lambda: model.get_view_features(images)}, 3)["image side"]
            rows.append({"labels x templates": f"image side, {len(images)} V1 clouds (ViT-B/32)",
                         "threads": threads, "busy_process": busy, "ours_s": statistics.median(seconds),
                         "load_after": load_average()})  # fmt: skip
            print(f"| image side of {len(images)} V1 clouds, ViT-B/32 | {threads} | {busy} | "
                  f"{statistics.median(seconds):.2f} s |", flush=True)  # fmt: skip
        return rows
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print(f"| {row['labels x templates']} ({row['sentences']} sentences) | {row['threads']} | "
              f"{row['busy_process']} | {row['ours_s']:.2f} s | {row['batched_s']:.2f} s | "
              f"{row['ours_over_batched']:.2f}x | {row['load_before']}-{row['load_after']} |", flush=True)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--busy", action="store_true", help="also with one competing busy process")
    parser.add_argument("--sets", nargs="+", choices=LABEL_SETS, default=list(LABEL_SETS), help="label sets to time")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--image-batch", type=int, default=0, help="also time the image side of this many V1 clouds")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "text_encoding.json"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = PointCLIPModel(pointclip_config(build_clip_config("vit-b32"), "pointclip_v1")).eval()
    sets = {name: tokenized(*LABEL_SETS[name]) for name in args.sets}
    images = torch.rand(args.image_batch, 6, 1, 224, 224).expand(-1, -1, 3, -1, -1) if args.image_batch else None
    print(f"{header()}; text tower 512 x 12, random weights; medians of {args.pairs} interleaved pairs", flush=True)
    print("| labels x templates | threads | busy process | ours | one batched call | ours / batched | load |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    conditions = [(threads, False) for threads in args.threads] + ([(max(args.threads), True)] if args.busy else [])
    rows = []
    with torch.inference_mode():
        for threads, busy in conditions:
            rows += measure(model, sets, args, threads, busy, images)
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
