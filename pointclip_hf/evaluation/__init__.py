"""Evaluate a [`PointCLIPModel`] on a labelled dataset, or classify a folder of point-cloud files: streaming, resumable
and multi-process.

- `evaluate(model, dataset)` -> [`EvaluationReport`] (accuracy, per-class accuracy, confusion matrix and the full
  setup), with `output_dir/predictions.jsonl`, `output_dir/report.json` and `output_dir/confusion_matrix.png`.
- `classify_files(model, folder_or_paths, labels)` -> one record per file, optionally written to a JSONL file.

Modules
-------
- `evaluate.py`, `classify_files.py`: the two public functions, each a short sequence of named steps.
- `checks.py`: the checks of arguments, labels, processor and output locations made before any work.
- `prediction_loop.py`: the batched predict loop both functions share; it reads its clouds through
  `pointclip_hf.cloud_stream` (the sources of dataset rows and files, and the one streaming loop).
- `predictions_file.py`: the resumable JSON-lines predictions file, its per-process shard files and their merge.
- `fingerprint.py`: what a run depends on (the file header's fingerprint) and the setup stored in the report.
- `distributed.py`: finding the accelerator of a multi-process launch, and the steps that involve all processes.
- `report.py`: [`EvaluationReport`]. The confusion-matrix image is drawn by `pointclip_hf.visualization`.

Pipeline
--------
A `torch.utils.data.DataLoader` with `num_workers` worker processes reads each cloud (a dataset row or a file) and
prepares it on the CPU with the processor's `prepare_points` (normalisation and sampling), *one cloud at a time*, so
clouds of different sizes are fine and a cloud's result never depends on its batch, worker or process (this matters
for `sampling="random"`, whose generator is re-seeded per call). The prepared clouds are stacked into `[B, N, 3]`; the
main process renders the views on the model's device and runs the model under `torch.inference_mode()`. Only one
batch of pixels and logits exists at a time and the confusion matrix is accumulated batch by batch, so memory stays
flat in the number of clouds (`classify_files` returns its records, which naturally grow with the number of files).

Predictions file (JSON lines)
-----------------------------
The first line is a header `{"header": {"format", "task", "fingerprint"}}`. The fingerprint holds everything that
determines the predictions: the model by its content, not its path (hashes of its config without paths, of the CLIP
weights, of the adapter weights and of the prompt tokens), its dtype, the compute (`compute`: device type, image-tower
backend, and the kernels: the GPU's name on CUDA, torch's CPU capability and the CPU's bf16/fp16/int8 matrix features
on a CPU; not the thread count, which does not change CPU results), the processor's point and image settings, the
labels, `top_k`, and the data (the `datasets` fingerprint and length of the dataset, or the count, a hash of the file
paths and a hash of the files' bytes: xxHash3-128, so a file touched or copied with the same bytes still resumes and
a file whose bytes changed, even with the same size and time, does not). Then one line per cloud, in index order::

    {"index": 7, "label": "chair", "label_id": 2, "prediction": "table", "prediction_id": 5, "score": 0.41,
     "correct": false, "top_k": [{"label": "table", "score": 0.41}, ...]}                  (evaluate)
    (with `"path": "tree/chair/a.ply"` after `"index"` when the dataset has a `path` column, as class-folder trees do)
    {"index": 7, "path": "clouds/a.ply", "prediction": "table", "score": 0.41, "top_k": [...]}   (classify_files)

Lines are flushed after every batch; a cloud whose scores are not finite raises before its line is written. With
`resume=True` (the default) an existing file is checked before anything is written to it: a header from another run
(other model, config, adapter, dtype, compute, processor, labels, data) raises a `ValueError` naming each field that
differs with both values, and leaves the file untouched; a last line without its newline (the run died while writing
it, or was interrupted with Ctrl-C) is cut off and recomputed; any other damage (a malformed line before the end, an
index out of order, a label that is not one of the run's, a score that is not a number in `[0, 1]`) raises. Because
the loader keeps the order, the records of a file are always exactly the first indices of the work it holds, so
resuming means continuing right after them. `resume=False` (`--no-resume` on the command line) starts afresh and
overwrites. A write that fails (a full disk) raises an `OSError` naming the file.

Scale-out with accelerate
-------------------------
With an `accelerate.Accelerator` (passed in, or created here when the script was started with several processes by
`accelerate launch` / `torchrun`; on machines without GPUs the processes run on the CPU with gloo), process `r` of
`W` takes the indices `r, r + W, r + 2W, ...`: disjoint shards that cover every index once. There is no padding to
even batches and hence no duplicate to drop, and no collective operation runs inside the loop (the shards may take
different numbers of batches). Each process appends to its own shard file `predictions.rank{r}.jsonl` (its header also
names `rank` and `world_size`), so each process resumes its own shard on its own. At the end the confusion matrices
are summed across processes (`accelerator.reduce`) and `classify_files` gathers its records (`gather_object`) so
that every process returns the same result; the main process merges the shard files by index (a streaming k-way
merge), checks that the merged indices are exactly `0 .. n-1`, writes `predictions.jsonl` atomically with the header
a single-process run writes (the file is byte-for-byte the one a single process would write, given identical
numerics), deletes the shard files and writes the report. A single process writes `predictions.jsonl` directly.
The output location must be on a file system that all processes share. An interrupted multi-process run resumes with
the same number of processes (another number is a clear error; or pass `resume=False`); a finished
`predictions.jsonl` can be re-read by any number of processes. Set-up errors (a file of another run, a damaged
shard) are raised on every process, not only on the one that found them.

On CPU-only machines `accelerate launch --cpu --num_processes 2` starts a single process (it needs MPI for more); use
`torchrun --nproc_per_node 2 script.py` (or `accelerate launch --multi_gpu ...`) with `ACCELERATE_USE_CPU=1`.
"""

from .classify_files import classify_files
from .evaluate import evaluate
from .report import EvaluationReport

__all__ = ["EvaluationReport", "classify_files", "evaluate"]
