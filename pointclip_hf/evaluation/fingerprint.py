"""
What a run depends on: the fingerprint stored in the predictions file's header (two runs with equal fingerprints
can share a predictions file) and the fuller setup stored in the report.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import stat

import torch
import xxhash

from ..dtype_policy import cpu_flags
from ..model.choices import dtype_name
from ..model.pipeline_pointclip import label_tokens
from ..model.weights_fingerprint import clip_weights_sha256, tensors_sha256
from ..onnx_image_tower import image_tower_backend

MAX_INLINE_PROMPT_CHARS = 20_000
_HASH_CHUNK_BYTES = 1 << 20
_VOLATILE_CONFIG_KEYS = ("transformers_version", "dtype", "torch_dtype", "clip_model_name_or_path", "clip_revision")
# CPU features that select other bf16/fp16/int8 matrix kernels within one torch capability level.
_KERNEL_CPU_FLAGS = {"avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_fp16", "amx_int8",
                     "amx_tile", "bf16", "i8mm", "sve", "sve2"}  # fmt: skip


def dataset_fingerprint(dataset, class_names: list[str] | None) -> dict:
    """The data part of the fingerprint for a `datasets.Dataset`: its `datasets` fingerprint, length and classes."""
    return {
        "kind": "dataset",
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_samples": len(dataset),
        "class_names": class_names,
    }


def files_fingerprint(paths: list[str]) -> dict:
    """
    The data part of the fingerprint for a list of files: their count, a hash of their paths and a hash of their
    contents (xxHash3-128 of every file's bytes, about 1 ms for a 1M-point `.npy`: see
    `benchmarks/bench_resume_fingerprint.py`). A file whose bytes changed is never served its old score; one touched,
    copied or restored with the same bytes still resumes.

    Args:
        paths (`list[str]`):
            The files, in the order of the run.
    """
    contents = hashlib.sha256()
    for path in paths:
        contents.update(f"{file_content_hash(path)}\n".encode())
    return {
        "kind": "files",
        "num_files": len(paths),
        "paths_sha256": hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest(),
        "contents_sha256": contents.hexdigest(),
    }


def file_content_hash(path: str | os.PathLike) -> str:
    """The xxHash3-128 hex digest of a regular file's bytes; `"unreadable"` for anything else (a missing file, a
    FIFO, a device), which its reader then reports."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return "unreadable"
            digest = xxhash.xxh3_128()
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def compute_fingerprint(model, device: torch.device) -> dict:
    """
    What makes the same model give other bits on another machine: the device type, the image tower's backend and the
    kernels they run (the GPU's name on CUDA; on a CPU, torch's kernel level and the matrix-unit features that bf16
    and fp16 products use). The thread count is not in it: CPU results do not depend on it.

    Args:
        model ([`PointCLIPModel`]):
            The model.
        device (`torch.device`):
            Where the run computes.
    """
    identity = {"device_type": device.type, "image_tower_backend": image_tower_backend(model)}
    if device.type == "cuda":
        identity["gpu"] = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        features = sorted(cpu_flags() & _KERNEL_CPU_FLAGS)
        identity["cpu_kernels"] = " ".join([platform.machine(), torch.backends.cpu.get_cpu_capability(), *features])
    return identity


def run_fingerprint(model, processor, labels: list[str], k: int, data: dict, device=None) -> dict:
    """
    Everything that determines the predictions. The model is known by its content (config, CLIP weights, adapter,
    the tokens of its prompts), not by the path it was loaded from.

    Args:
        model ([`PointCLIPModel`]):
            The model; its config (without paths), adapter and CLIP weights (hashed) and dtype are recorded.
        processor ([`PointCLIPProcessor`]):
            The processor; its point and image settings and the hash of the prompt tokens are recorded.
        labels (`list[str]`):
            The candidate labels, in order (none for a retrieval index: no prompt tokens are hashed then).
        k (`int`):
            The number of best labels stored per cloud.
        data (`dict`):
            From [`dataset_fingerprint`] or [`files_fingerprint`].
        device (`torch.device`, *optional*, defaults to the model's device):
            Where the run computes (see [`compute_fingerprint`]).
    """
    device = model.device if device is None else torch.device(device)
    return {
        "config_sha256": _sha256_json(_strip_volatile(model.config.to_dict())),
        "adapter_sha256": _adapter_sha256(model),
        "clip_weights_sha256": clip_weights_sha256(model),
        "prompt_tokens_sha256": tensors_sha256(label_tokens(model, processor, labels)) if labels else None,
        "dtype": dtype_name(model.dtype),
        "compute": compute_fingerprint(model, device),
        "processor": _processor_settings(processor),
        "labels": list(labels),
        "top_k": k,
        "data": data,
    }


def run_setup(model, processor, fingerprint: dict, accelerator, batch_size: int, num_workers: int) -> dict:
    """
    The setup of a run as stored in [`EvaluationReport.setup`]: the fingerprint's content spelled out (large prompt
    data replaced by a hash and counts) plus a `runtime` entry (device, processes, batch size, workers, versions).

    Args:
        model ([`PointCLIPModel`]), processor ([`PointCLIPProcessor`]):
            As given to [`run_fingerprint`].
        fingerprint (`dict`):
            From [`run_fingerprint`].
        accelerator (`accelerate.Accelerator`, *optional*):
            The accelerator of a multi-process run.
        batch_size (`int`), num_workers (`int`):
            The loop's settings.
    """
    config = model.config
    data = fingerprint["data"]
    return {
        "model_name_or_path": str(model.name_or_path),
        "clip_model_name_or_path": config.clip_model_name_or_path,
        "config_sha256": fingerprint["config_sha256"],
        "projection_style": config.projection_style,
        "num_views": config.num_views,
        "view_weights": None if config.view_weights is None else list(config.view_weights),
        "prompt_templates": _compact(list(config.prompt_templates or [])),
        "class_prompts": _compact(config.class_prompts),
        "label_names": list(fingerprint["labels"]),
        "use_adapter": bool(config.use_adapter),
        "adapter_sha256": fingerprint["adapter_sha256"],
        "dtype": fingerprint["dtype"],
        **_processor_settings(processor),
        "top_k": fingerprint["top_k"],
        "dataset" if data["kind"] == "dataset" else "files": dict(data),
        "runtime": _runtime(model, accelerator, batch_size, num_workers),
    }


def dataset_name(dataset) -> str | None:
    info = getattr(dataset, "info", None)
    return getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)


def _processor_settings(processor) -> dict:
    """The settings of the processor's feature extractor that change the pixels the model sees."""
    extractor = processor.feature_extractor
    settings = {
        "projection_style": extractor.projection_style,
        "num_points": extractor.num_points,
        "sampling": extractor.sampling,
        "normalize": extractor.normalize,
        "image_size": extractor.image_size,
        "clip_normalize": extractor.clip_normalize,
    }
    if extractor.clip_normalize:
        settings.update(image_mean=list(extractor.image_mean), image_std=list(extractor.image_std))
    if extractor.sampling == "random":
        settings["sampling_seed"] = extractor.seed
    if extractor.up_axis is not None:
        settings["up_axis"] = extractor.up_axis
    return settings


def _runtime(model, accelerator, batch_size: int, num_workers: int) -> dict:
    import transformers

    return {
        "device": str(model.device),
        "image_tower_backend": image_tower_backend(model),
        "num_processes": accelerator.num_processes if accelerator is not None else 1,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "versions": {
            "pointclip_hf": importlib.metadata.version("pointclip_hf"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def _strip_volatile(value):
    """A config dict without the entries that change with the library version, the dtype of the weights or the path
    they were loaded from (the weights and tokens are hashed by content instead)."""
    if isinstance(value, dict):
        return {
            str(key): _strip_volatile(item)
            for key, item in value.items()
            if not str(key).startswith("_") and key not in _VOLATILE_CONFIG_KEYS
        }
    if isinstance(value, (list, tuple)):
        return [_strip_volatile(item) for item in value]
    return value


def _sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _adapter_sha256(model) -> str | None:
    adapter = getattr(model, "adapter", None)
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(adapter.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _compact(value):
    """Small prompt data as it is; large data as a hash and counts."""
    if value is None or len(json.dumps(value)) <= MAX_INLINE_PROMPT_CHARS:
        return value
    counts = (
        {"num_classes": len(value), "num_sentences": sum(len(v) for v in value.values())}
        if isinstance(value, dict)
        else {"num_entries": len(value)}
    )
    return {"sha256": _sha256_json(value), **counts}
