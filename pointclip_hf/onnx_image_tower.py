"""CLIP's image tower through ONNX Runtime: `use_onnx_image_tower(model)` (the `[onnx]` extra).

The tower is exported once per checkpoint and input shape to `cache_dir` (default `$HF_HOME/pointclip_hf/onnx`,
next to the Hugging Face model cache), keyed by a SHA-256 of the tower's config, input shape, the torch/onnx versions
and the identity of the checkpoint its weights were loaded from (see `checkpoint_identity`: a Hub repo at a pinned
commit, or the weight files' resolved paths, sizes and modification times), and reused from there. Weights of unknown
origin (a model built in memory, a Hub branch rather than a commit) or changed after loading (replaced, cast, changed
in place: told by each tensor's data pointer and version counter) are keyed by a SHA-256 of their bytes instead.
A tower whose weights change after `use_onnx_image_tower` refuses to run (its graph holds the old weights) until
`use_onnx_image_tower` exports it again. The exported graph has a fixed batch size: the model's tower calls all
hold `images_per_tower_call()` images (half a cloud on the CPU), so a cloud's features still never depend
on the rest of the batch. Everything else (projection, text tower, projections, logits) stays in torch.

ONNX Runtime runs the tower in float32 on the CPU execution provider; its features agree with torch float32
within 1e-5 relative (see `benchmarks/bench_inference.py --backend onnxruntime`).
"""

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .atomic_files import write_folder_atomically
from .model.modeling_pointclip import weights_state
from .model.weights_fingerprint import tensors_sha256

ONNX_FILE = "image_tower.onnx"
_OPSET = 18
_MISSING_EXTRA = (
    "The onnxruntime backend needs the [onnx] extra: pip install 'pointclip_hf[onnx]' (onnxruntime, onnx, onnxscript)."
)


class OnnxImageTower(torch.nn.Module):
    """Stands in for `model.clip.vision_model`: the same submodules and state-dict keys, a forward through ONNX Runtime.

    Args:
        vision_model (`CLIPVisionTransformer`):
            The torch image tower; its children are adopted, so saving and loading weights work as before.
        batch_size (`int`):
            Images per call, the fixed batch dimension of the exported graph.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where exported graphs are kept.
        providers (`list[str]`, *optional*, defaults to `["CPUExecutionProvider"]`):
            ONNX Runtime execution providers.
    """

    def __init__(self, vision_model: torch.nn.Module, batch_size: int, cache_dir=None, providers=None, checkpoint=None):
        super().__init__()
        ort = _import_onnxruntime()
        for name, child in vision_model.named_children():
            self.add_module(name, child)
        self.config = vision_model.config
        self.torch_tower = (vision_model,)  # not a submodule: its children are this module's
        self.batch_size = batch_size
        image_size = self.config.image_size
        self.input_shape = (batch_size, 3, image_size, image_size)
        self.onnx_path = export_image_tower(vision_model, self.input_shape, cache_dir, checkpoint)
        self.exported_state = weights_state(self)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # called from the single-threaded CPU workers, several at once
        self.session = ort.InferenceSession(
            str(self.onnx_path), options, providers=providers or ["CPUExecutionProvider"]
        )

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """
        Args:
            pixel_values (`torch.Tensor` of shape `(batch_size, 3, S, S)`):
                Exactly the exported shape; float32.

        Returns:
            `BaseModelOutputWithPooling` with only `pooler_output` (`torch.Tensor` of shape `(batch_size, hidden)`),
            on the device of `pixel_values`.
        """
        if tuple(pixel_values.shape) != self.input_shape:
            raise ValueError(
                f"The ONNX image tower was exported for pixel_values of shape {self.input_shape}, got "
                f"{tuple(pixel_values.shape)}: set max_images_per_batch before use_onnx_image_tower."
            )
        if pixel_values.dtype != torch.float32:
            raise TypeError(f"The ONNX image tower runs in float32, got pixel_values of dtype {pixel_values.dtype}.")
        if not self.is_current():
            raise RuntimeError(
                "The image tower's weights changed after use_onnx_image_tower(model): its ONNX graph holds the old "
                "ones. Call use_onnx_image_tower(model) again to export the new weights."
            )
        inputs = {"pixel_values": pixel_values.detach().cpu().contiguous().numpy()}
        (pooled,) = self.session.run(["pooler_output"], inputs)
        return BaseModelOutputWithPooling(pooler_output=torch.from_numpy(pooled).to(pixel_values.device))

    def is_current(self) -> bool:
        """Whether the weights are those exported (no weight replaced, cast or changed in place since)."""
        return weights_state(self) == self.exported_state


def use_onnx_image_tower(model, cache_dir=None, providers=None):
    """Run `model`'s CLIP image tower through ONNX Runtime from now on; everything else is unchanged.

    Args:
        model ([`PointCLIPModel`]):
            A float32 model. Its `config.max_images_per_batch` (or device default) fixes the exported batch size.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where exported graphs are kept (default `$HF_HOME/pointclip_hf/onnx`).
        providers (`list[str]`, *optional*):
            ONNX Runtime execution providers (default: the CPU one).

    Returns:
        [`PointCLIPModel`]: `model`, with `model.clip.vision_model` an [`OnnxImageTower`].

    Raises:
        `ImportError`: without the `[onnx]` extra. `TypeError`: for a model that is not float32.
    """
    _import_onnxruntime()
    if model.dtype != torch.float32:
        raise TypeError(f"The onnxruntime backend runs the image tower in float32; the model is {model.dtype}.")
    vision_model = model.clip.vision_model
    if isinstance(vision_model, OnnxImageTower):
        if vision_model.is_current():
            return model
        (vision_model,) = vision_model.torch_tower
    batch_size = model.images_per_tower_call()
    checkpoint = checkpoint_identity(model)
    model.clip.vision_model = OnnxImageTower(vision_model.eval(), batch_size, cache_dir, providers, checkpoint)
    return model


def checkpoint_identity(model) -> dict | None:
    r"""
    What names `model`'s CLIP weights on disk, cheaply: the Hub repo and the commit they were loaded at, or, for a local
    folder, the resolved path, size and modification time (ns) of each of its safetensors files, with the Hub arguments
    that chose them.

    Args:
        model ([`PointCLIPModel`]):
            The model.

    Returns:
        `dict`, or `None` when the weights were not loaded by `from_pretrained`, were changed since (replaced, cast,
        moved or changed in place), or come from a Hub branch rather than a pinned commit.
    """
    if getattr(model, "loaded_weights_state", None) != weights_state(model.clip):
        return None
    source = model.config.clip_model_name_or_path or model.name_or_path
    arguments = {key: str(value) for key, value in model.loading_kwargs.items() if key in ("subfolder", "revision")}
    if os.path.isdir(source):
        folder = Path(source, arguments.get("subfolder", ""))
        files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.safetensors.index.json"))
        stats = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in files]
        return {"folder": str(folder.resolve()), "files": stats, **arguments} if stats else None
    commit = model.config.clip_revision
    if commit is None or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None
    return {"repo": source, "commit": commit, "subfolder": arguments.get("subfolder", "")}


def image_tower_backend(model) -> str:
    """`"onnxruntime"` when `model`'s image tower is an [`OnnxImageTower`], else `"torch"`."""
    return "onnxruntime" if isinstance(model.clip.vision_model, OnnxImageTower) else "torch"


def export_image_tower(
    vision_model: torch.nn.Module, input_shape: tuple[int, ...], cache_dir=None, checkpoint: dict | None = None
) -> Path:
    """The cached ONNX graph of `vision_model` for float32 input of `input_shape`, exported on first use; keyed by
    `checkpoint` (see [`checkpoint_identity`]) when given, else by the weights' bytes.

    Returns:
        `Path`: the `.onnx` file (its weights may lie beside it, in `image_tower.onnx.data`).
    """
    import onnx

    key = image_tower_key(vision_model, input_shape, onnx.__version__, checkpoint)
    folder = Path(cache_dir or default_cache_dir()) / key
    if not (folder / ONNX_FILE).is_file():
        write_folder_atomically(folder, lambda target: _export(vision_model, input_shape, target / ONNX_FILE))
    return folder / ONNX_FILE


def image_tower_key(
    vision_model: torch.nn.Module, input_shape: tuple[int, ...], onnx_version: str, checkpoint: dict | None = None
) -> str:
    """SHA-256 of what the exported graph depends on: config, shape, versions, and the weights: the identity of their
    `checkpoint` when given, else their names, dtypes and bytes."""
    header = {
        "config": vision_model.config.to_dict(),
        "input_shape": list(input_shape),
        "torch": torch.__version__,
        "onnx": onnx_version,
        "opset": _OPSET,
        "checkpoint": checkpoint,
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode())
    if checkpoint is None:
        digest.update(tensors_sha256(vision_model.state_dict()).encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "pointclip_hf" / "onnx"


class _PooledImageTower(torch.nn.Module):
    def __init__(self, vision_model: torch.nn.Module):
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values).pooler_output


def _export(vision_model: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    example = torch.zeros(input_shape, dtype=torch.float32, device=next(vision_model.parameters()).device)
    with torch.no_grad():
        torch.onnx.export(
            _PooledImageTower(vision_model).eval(), (example,), os.fspath(path), input_names=["pixel_values"],
            output_names=["pooler_output"], opset_version=_OPSET, dynamo=True, verbose=False,
        )  # fmt: skip


def _import_onnxruntime():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError(_MISSING_EXTRA) from None
    return onnxruntime
