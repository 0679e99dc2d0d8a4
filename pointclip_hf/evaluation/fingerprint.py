"""
What a run depends on: the fingerprint stored in the predictions file's header (two runs with equal fingerprints
can share a predictions file) and the fuller setup stored in the report.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os

import torch

from ..weights_fingerprint import clip_weights_sha256

MAX_INLINE_PROMPT_CHARS = 20_000


def dataset_fingerprint(dataset, class_names: list[str] | None) -> dict:
    """The data part of the fingerprint for a `datasets.Dataset`: its `datasets` fingerprint, length and classes."""
    return {
        "kind": "dataset",
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_samples": len(dataset),
        "class_names": class_names,
    }


def files_fingerprint(paths: list[str]) -> dict:
    """The data part of the fingerprint for a list of files: their count, a hash of their paths, and a hash of their
    sizes and modification times (a file whose content changed since the last run is not served a stale score)."""
    return {
        "kind": "files",
        "num_files": len(paths),
        "paths_sha256": hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest(),
        "stats_sha256": hashlib.sha256("\n".join(_file_stat(path) for path in paths).encode("utf-8")).hexdigest(),
    }


def _file_stat(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size} {stat.st_mtime_ns}"


def run_fingerprint(model, processor, labels: list[str], k: int, data: dict) -> dict:
    """
    Everything that determines the predictions.

    Args:
        model ([`PointCLIPModel`]):
            The model; its `name_or_path`, config (hashed), adapter and CLIP weights (hashed) and dtype are recorded.
        processor ([`PointCLIPProcessor`]):
            The processor; its point and image settings are recorded.
        labels (`list[str]`):
            The candidate labels, in order.
        k (`int`):
            The number of best labels stored per cloud.
        data (`dict`):
            From [`dataset_fingerprint`] or [`files_fingerprint`].
    """
    return {
        "model": str(model.name_or_path),
        "config_sha256": _sha256_json(_strip_volatile(model.config.to_dict())),
        "adapter_sha256": _adapter_sha256(model),
        "clip_weights_sha256": clip_weights_sha256(model),
        "dtype": str(model.dtype).replace("torch.", ""),
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
    return settings


def _runtime(model, accelerator, batch_size: int, num_workers: int) -> dict:
    import transformers

    from ..onnx_image_tower import image_tower_backend

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
    """A config dict without the entries that change with the library version or the dtype of the weights."""
    if isinstance(value, dict):
        return {
            str(key): _strip_volatile(item)
            for key, item in value.items()
            if not str(key).startswith("_") and key not in ("transformers_version", "dtype", "torch_dtype")
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
