"""`.npy` and `.npz` readers: the declared shape is checked against the caps before any array is allocated."""

import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import FormatError, check_declared_size

FLOAT32_STEPS_BITS = 16
"""A reader returns float64 when float32 would resolve the cloud's extent into fewer than 2**16 steps: coordinates far
from the origin for the cloud's size, as georeferenced scans have (a 200 m tile at UTM northing 4,500,000)."""

NPZ_KEYS = ("points", "xyz", "data")
"""Members tried, in order, when reading a `.npz` archive; otherwise its only array."""

_MAX_HEADER_BYTES = 10_000
_READ_BLOCK_BYTES = 1 << 18


def load_npy(path: Path) -> np.ndarray:
    """The numeric array of a `.npy` file (never unpickled)."""
    with open(path, "rb") as handle:
        return _read_npy_stream(handle, "the array", path.stat().st_size)


def load_npz(path: Path) -> np.ndarray:
    """The point array of a `.npz` archive: the member `points`, `xyz` or `data`, else its only member (`zipfile`
    refuses a file that is not a zip archive, or an encrypted member, naming the member)."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for name, info in members.items():
            check_declared_size(info.file_size, f"archive member {name!r}", stored_bytes=info.compress_size)
        info = members[_choose_member(members)]
        with archive.open(info) as handle:
            return _read_npy_stream(handle, f"the member {info.filename!r}", info.file_size)


def _choose_member(members: dict[str, zipfile.ZipInfo]) -> str:
    """The first of `NPZ_KEYS` (`.npy` added) among `members`, else the only member; a member that is not a `.npy`
    array is refused by its magic bytes when read."""
    key = next((f"{key}.npy" for key in NPZ_KEYS if f"{key}.npy" in members), None)
    if key is None and len(members) != 1:
        raise FormatError(
            f"cannot tell which array holds the points: expected a key named "
            f"{' / '.join(repr(k) for k in NPZ_KEYS)} or a single array, found keys "
            f"{[name.removesuffix('.npy') for name in members]}"
        )
    return key or next(iter(members))


def _read_npy_stream(handle: BinaryIO, what: str, stored_bytes: int) -> np.ndarray:
    """Parse the `.npy` header of `handle`, check the declared array fits `stored_bytes` and the cap, then read it."""
    magic, version = handle.read(6), tuple(handle.read(2))
    if magic != b"\x93NUMPY" or version not in ((1, 0), (2, 0), (3, 0)):
        raise FormatError(f"{what} is not a .npy array (no NumPy magic bytes of a known version: {magic!r} {version})")
    try:
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle, max_header_size=_MAX_HEADER_BYTES)
    except Exception as error:  # numpy raises ValueError, SyntaxError or tokenize errors for a bad header
        raise FormatError(f"{what} has a malformed .npy header ({error})") from None
    check_numeric_dtype(dtype)
    count = int(np.prod(shape, dtype=object))
    num_bytes = count * dtype.itemsize
    check_declared_size(num_bytes, f"{what} of shape {shape}")
    if num_bytes > stored_bytes:
        raise FormatError(f"{what} is truncated: its header declares shape {shape} ({num_bytes:,} bytes)")
    flat = np.empty(count, dtype=dtype)
    received = _read_into(handle, memoryview(flat).cast("B"))
    if received != num_bytes:
        raise FormatError(f"{what} is truncated: header declares {num_bytes:,} bytes, {received:,} follow")
    return flat.reshape(shape, order="F" if fortran_order else "C")


def _read_into(handle: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `handle` block by block (a zip member asked for all of it at once joins copies of the whole
    member); return the bytes received."""
    received = 0
    while received < len(buffer):
        block = handle.readinto(buffer[received : received + _READ_BLOCK_BYTES])
        if not block:
            break
        received += block
    return received


def check_numeric_dtype(dtype: np.dtype) -> None:
    """Refuse structured, object, string or complex dtypes: a cloud is a plain real numeric array."""
    if dtype.names is not None or dtype.kind not in "iuf":
        raise FormatError(f"expected a plain real numeric [N, C] array, got dtype {dtype}")


def float_dtype_for(dtypes) -> type:
    """`np.float32` when float32 holds every value of `dtypes` exactly (floats of up to 4 bytes, integers of up to 2),
    else `np.float64`."""
    wide = any(np.dtype(d).itemsize > (4 if np.dtype(d).kind == "f" else 2) for d in dtypes)
    return np.float64 if wide else np.float32


def needs_float64(largest: float, extent: float) -> bool:
    """Whether a cloud whose largest |coordinate| is `largest` and whose extent is `extent` needs float64: float32
    steps there are `largest * 2**-23`, too coarse when fewer than `2**FLOAT32_STEPS_BITS` span the extent."""
    return largest > extent * 2.0 ** (23 - FLOAT32_STEPS_BITS)
