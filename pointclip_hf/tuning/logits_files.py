"""Reading another network's logits from `.npy`, `.npz` or `.safetensors` files: never unpickled, sizes checked before
anything is allocated, and every failure one `ValueError` that names the file."""

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

# The largest logits array read (1 GiB: 250 million float32 scores). Raise it for bigger files.
MAX_LOGITS_BYTES = 2**30
LOGITS_SUFFIXES = (".npy", ".npz", ".safetensors")
_SAFETENSORS_ITEMSIZES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2}


def read_logits_file(path: str | os.PathLike, max_bytes: int | None = None) -> torch.Tensor:
    r"""
    Read the logits array of a file: a `.npy` array, or the `"logits"` entry (or the only entry) of a `.npz` or
    `.safetensors` file.

    Args:
        path (`str` or `os.PathLike`):
            The file.
        max_bytes (`int`, *optional*):
            The largest array accepted, checked from the declared shape before reading; defaults to
            `MAX_LOGITS_BYTES`.

    Returns:
        `torch.Tensor` as stored (any shape and dtype; the caller checks them).

    Raises:
        `FileNotFoundError` when the file does not exist; `ValueError` for any other problem (format, size, damage).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"logits file not found: {os.fspath(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in LOGITS_SUFFIXES:
        raise ValueError(
            f"unsupported logits file {os.fspath(path)!r}: use .npy, .npz or .safetensors "
            f"(pickle-based formats such as .pt/.pth/.pkl are refused)"
        )
    limit = MAX_LOGITS_BYTES if max_bytes is None else max_bytes
    try:
        return _READERS[suffix](path, limit)
    except Exception as error:  # noqa: BLE001 - any failure of a parser on a damaged file is a bad file
        ours = isinstance(error, (FileNotFoundError, ValueError))
        problem = f": {error}" if ours else f" is damaged ({type(error).__name__}: {error})"
        raise ValueError(f"logits file {os.fspath(path)!r}{problem}") from None


def _read_npy(path: Path, limit: int) -> torch.Tensor:
    with open(path, "rb") as handle:
        _check_npy_header(handle, limit)
    return _native_tensor(np.load(path, allow_pickle=False))


def _native_tensor(array: np.ndarray) -> torch.Tensor:
    """The array as a tensor; big-endian data (written on another machine) converted to the native byte order."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(array)


def _check_npy_header(handle, limit: int) -> None:
    """Raise unless the `.npy` stream's header declares a plain array of at most `limit` bytes."""
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(handle)
    if dtype.hasobject:
        raise ValueError("it holds Python objects; refusing to load (would need pickle)")
    _check_size(shape, dtype.itemsize, limit, "array")


def _check_size(shape, itemsize: int, limit: int, what: str) -> None:
    """Raise when an array of `shape` and `itemsize`, as a file declares it, is above `limit` bytes."""
    size = int(np.prod(shape, dtype=np.float64)) * itemsize
    if size > limit:
        raise ValueError(f"its {what} takes {size:,} bytes, above the {limit:,}-byte limit (MAX_LOGITS_BYTES)")


def _read_npz(path: Path, limit: int) -> torch.Tensor:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        info = _pick_member(members)
        if not info.filename.endswith(".npy"):
            raise ValueError(f"its member {info.filename!r} is not a .npy array")
        with archive.open(info) as member:
            _check_npy_header(member, limit)
            member.seek(0)
            return _native_tensor(np.load(member, allow_pickle=False))


def _read_safetensors(path: Path, limit: int) -> torch.Tensor:
    with safe_open(os.fspath(path), framework="pt") as handle:
        name = _pick_member({key: key for key in handle.keys()})
        tensor_slice = handle.get_slice(name)
        itemsize = _SAFETENSORS_ITEMSIZES.get(tensor_slice.get_dtype(), 8)
        _check_size(tensor_slice.get_shape(), itemsize, limit, f"tensor {name!r}")
        return handle.get_tensor(name)


def _pick_member(members: dict):
    if "logits" in members:
        return members["logits"]
    if len(members) == 1:
        return next(iter(members.values()))
    raise ValueError(f"it holds {len(members)} arrays {sorted(members)}; expected a key 'logits' or a single array")


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".safetensors": _read_safetensors}
