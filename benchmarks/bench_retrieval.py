"""Benchmark of the retrieval index (`pointclip_hf.retrieval`) on cached embeddings.

For 10,000 and 100,000 clouds with ViT-B/16-wide embeddings (C = 512) of 6 and 10 views, random unit cloud embeddings
(as `embeddings_from_view_features` makes them without adapter) are written as a finished index folder, then timed:

| column | what is timed |
|---|---|
| `write s` | `write_complete`: `embeddings.safetensors` + `items.json` (what the end of `build_index` does) |
| `load s` | `PointCloudIndex.load`: read, check, and the view-summed copy for text search |
| `faiss add s` | building the two faiss `IndexFlatIP` (text and example) through `datasets.search.FaissIndex` |
| `text 1 / 100 ms` | one / 100 text queries (`C` values each, scored on the view-summed embeddings), top-10 |
| `like 1 / 100 ms` | one / 100 example queries (`views * C` values each), top-10 |
| `RSS GiB` | peak resident memory of the cell (`VmHWM`, reset per cell) |

Exact torch search and faiss (exact inner product too) must return the same top-10; the script checks it. The CLIP
image tower, which dominates building an index from clouds, is timed by `bench_inference.py`.

Usage::

    python benchmarks/bench_retrieval.py                  # 10k and 100k clouds, 6 and 10 views
    python benchmarks/bench_retrieval.py --sizes 10000    # 10k only
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointclip_hf.retrieval import PointCloudIndex  # noqa: E402
from pointclip_hf.retrieval.index_files import FORMAT, write_complete, write_header  # noqa: E402

WIDTH = 512
TOP_K = 10


def random_embeddings(num_clouds: int, num_views: int, seed: int = 0) -> torch.Tensor:
    """Unit cloud embeddings `(clouds, views * C)`: unit per view, then unit overall, built in blocks."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.empty(num_clouds, num_views * WIDTH)
    for start in range(0, num_clouds, 8192):
        block = torch.randn(min(8192, num_clouds - start), num_views, WIDTH, generator=generator)
        block = torch.nn.functional.normalize(block, dim=-1).flatten(1) / num_views**0.5
        embeds[start : start + len(block)] = block
    return embeds


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed(function, repeats: int = 5) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_cell(num_clouds: int, num_views: int, folder: Path) -> dict:
    reset_peak_rss()
    embeds = random_embeddings(num_clouds, num_views)
    header = {"format": FORMAT, "num_items": num_clouds, "width": num_views * WIDTH, "num_views": num_views,
              "fingerprint": {}}  # fmt: skip
    write_header(folder, header)
    items = [{"path": f"clouds/{i:06d}.ply"} for i in range(num_clouds)]
    start = time.perf_counter()
    write_complete(folder, embeds, torch.full((num_clouds,), 100.0), items)
    write_s = time.perf_counter() - start
    del embeds
    start = time.perf_counter()
    exact = PointCloudIndex.load(folder, backend="torch")
    load_s = time.perf_counter() - start
    faiss_index = PointCloudIndex(exact.header, exact.embeds, exact.logit_scale, exact.items, backend="faiss")
    generator = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(100, WIDTH, generator=generator), dim=-1)
    like = exact.embeds[torch.randint(0, num_clouds, (100,), generator=generator)]
    start = time.perf_counter()
    faiss_index.search(text[:1], TOP_K, pooled=True)
    faiss_index.search(like[:1], TOP_K)
    add_s = time.perf_counter() - start
    row = {"clouds": num_clouds, "views": num_views, "write_s": write_s, "load_s": load_s, "faiss_add_s": add_s}
    for name, index in (("torch", exact), ("faiss", faiss_index)):
        for kind, queries, pooled in (("text", text, True), ("like", like, False)):
            for count in (1, 100):
                batch = queries[:count]
                search = index.search
                seconds = timed(lambda search=search, batch=batch, pooled=pooled: search(batch, TOP_K, pooled=pooled))
                row[f"{name}_{kind}_{count}_ms"] = 1000 * seconds
    same = all(
        [hit["path"] for hit in a] == [hit["path"] for hit in b]
        for pooled, queries in ((True, text), (False, like))
        for a, b in zip(exact.search(queries, TOP_K, pooled=pooled), faiss_index.search(queries, TOP_K, pooled=pooled))
    )
    row["same_top10"] = same
    row["peak_rss_gib"] = peak_rss_gib()
    return row


def print_table(rows: list[dict]) -> None:
    columns = (
        ["clouds", "views", "write_s", "load_s", "faiss_add_s"]
        + [
            f"{name}_{kind}_{count}_ms"
            for name in ("torch", "faiss")
            for kind in ("text", "like")
            for count in (1, 100)
        ]
        + ["same_top10", "peak_rss_gib"]
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--views", type=int, nargs="+", default=[6, 10])
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    args = parser.parse_args()
    rows = []
    for num_clouds in args.sizes:
        for num_views in args.views:
            with tempfile.TemporaryDirectory() as folder:
                rows.append(bench_cell(num_clouds, num_views, Path(folder)))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    Path(args.output).write_text(json.dumps({"setup": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
