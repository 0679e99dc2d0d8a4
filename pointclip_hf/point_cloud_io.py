"""Load point clouds (and meshes, sampled to points) from common file formats.

The single entry point is :func:`load_point_cloud`, which returns a
``float32`` array of shape ``[N, C]`` with ``C >= 3``: the first three
columns are always ``x, y, z``; any further numeric channels the format
carries (normals, colours, intensity, ...) follow in file order.

Supported formats
-----------------
* ``.npy`` -- a numeric array ``[N, C>=3]`` (loaded with ``allow_pickle=False``).
* ``.npz`` -- the array stored under ``"points"``, ``"xyz"`` or ``"data"``
  (first match wins), otherwise the archive's only array.
* ``.xyz`` / ``.txt`` / ``.pts`` / ``.csv`` -- numeric rows separated by
  whitespace or commas. Blank lines and ``#`` comments are skipped; a
  ``.csv`` may start with a header row of column names; a ``.pts`` may start
  with a single-integer line giving the point count.
* ``.ply`` -- ``ascii``, ``binary_little_endian`` and ``binary_big_endian``.
  The ``vertex`` element is returned (``x, y, z`` first, then its other scalar
  properties); faces and other elements are ignored.
* ``.pcd`` -- ``DATA ascii`` and ``DATA binary`` (``binary_compressed`` is
  rejected). Padding fields named ``_`` are dropped, fields with ``COUNT > 1``
  become several columns, and a packed ``rgb``/``rgba`` field is unpacked to
  ``r, g, b[, a]`` columns with values in ``0..255``.
* ``.off`` / ``.obj`` / ``.stl`` -- triangle meshes, sampled uniformly by
  surface area to ``num_mesh_samples`` points with :mod:`trimesh`; the result
  is deterministic for a given ``seed``.

Colour channels are returned as stored (e.g. ``0..255`` for ``uchar``
colours); no normalisation is applied. A NaN or infinite coordinate is an
error, except in ``.pcd`` files, where ``NaN`` marks the invalid returns of
organised scans: those points are dropped.

Errors: an unsupported extension raises :class:`ValueError` listing the
supported ones; a missing file raises :class:`FileNotFoundError`; a truncated
or malformed file raises :class:`ValueError` naming the file and the problem.
Nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import os
import re
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["SUPPORTED_EXTENSIONS", "load_point_cloud"]

_ARRAY_EXTENSIONS = (".npy", ".npz")
_TEXT_EXTENSIONS = (".xyz", ".txt", ".pts", ".csv")
_MESH_EXTENSIONS = (".off", ".obj", ".stl")

SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    _ARRAY_EXTENSIONS + _TEXT_EXTENSIONS + (".ply", ".pcd") + _MESH_EXTENSIONS
)

# Keys tried, in order, when reading a .npz archive.
_NPZ_KEYS = ("points", "xyz", "data")


class _FormatError(ValueError):
    """A problem with the file contents; re-raised with the file name attached."""


def load_point_cloud(
    path: str | os.PathLike, num_mesh_samples: int = 2048, seed: int = 0
) -> np.ndarray:
    """Load a point cloud from ``path``.

    Args:
        path: file to read; the format is chosen by its extension
            (case-insensitive), one of :data:`SUPPORTED_EXTENSIONS`.
        num_mesh_samples: number of points sampled from the surface of a
            mesh file (``.off``/``.obj``/``.stl``); ignored for point formats.
        seed: seed for the mesh surface sampling, so that the same file and
            seed always give the same points.

    Returns:
        ``float32`` C-contiguous array ``[N, C]``, ``C >= 3``: ``x, y, z``
        followed by any extra per-point channels the file carries.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unsupported extension, or the file is malformed,
            truncated, empty, or has fewer than three coordinates per point.
    """
    path = Path(os.fspath(path))
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"Unsupported point cloud file extension {ext or '(none)'!r} for "
            f"{str(path)!r}; supported extensions are: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "Point cloud file not found", str(path))
    if not path.is_file():
        raise ValueError(f"Cannot load point cloud {str(path)!r}: not a regular file")

    if ext in _MESH_EXTENSIONS:
        if isinstance(num_mesh_samples, bool) or not isinstance(
            num_mesh_samples, (int, np.integer)
        ):
            raise TypeError(f"num_mesh_samples must be an int, got {num_mesh_samples!r}")
        if num_mesh_samples <= 0:
            raise ValueError(f"num_mesh_samples must be positive, got {num_mesh_samples}")

    if path.stat().st_size == 0:
        raise ValueError(f"Cannot load point cloud {str(path)!r}: file is empty (zero points)")

    try:
        if ext == ".npy":
            points = _load_npy(path)
        elif ext == ".npz":
            points = _load_npz(path)
        elif ext in _TEXT_EXTENSIONS:
            points = _load_text(path, ext)
        elif ext == ".ply":
            points = _load_ply(path.read_bytes())
        elif ext == ".pcd":
            points = _load_pcd(path.read_bytes())
        else:
            points = _load_mesh(path, ext, int(num_mesh_samples), seed)
        return _finalize(points, drop_invalid=ext == ".pcd")
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"Cannot load point cloud {str(path)!r}: {exc}") from exc


# --------------------------------------------------------------------------- #
# helpers


def _finalize(points: np.ndarray, drop_invalid: bool) -> np.ndarray:
    """Validate shape, cast to float32; drop rows with non-finite xyz when `drop_invalid`, else reject them."""
    if points.ndim != 2:
        raise _FormatError(f"expected a 2-D [N, C] array, got shape {points.shape}")
    if points.shape[1] < 3:
        raise _FormatError(
            f"expected at least 3 columns (x, y, z) per point, got {points.shape[1]}"
        )
    if points.shape[0] == 0:
        raise _FormatError("file contains zero points")
    points = np.ascontiguousarray(points, dtype=np.float32)
    finite = np.isfinite(points[:, :3]).all(axis=1)
    if not finite.all():
        if not drop_invalid:
            row = int(np.flatnonzero(~finite)[0])
            raise _FormatError(f"point {row} has a NaN or infinite coordinate")
        points = np.ascontiguousarray(points[finite])
        if points.shape[0] == 0:
            raise _FormatError("no point has finite x, y, z coordinates")
    return points


def _check_numeric(array: np.ndarray) -> None:
    if array.dtype.names is not None:
        raise _FormatError(
            f"structured arrays are not supported (fields {array.dtype.names}); "
            "store a plain numeric [N, C] array"
        )
    if not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise _FormatError(f"expected a real numeric array, got dtype {array.dtype}")


# --------------------------------------------------------------------------- #
# numpy


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise _FormatError("not a .npy file (missing the NumPy magic bytes)")
    array = np.load(path, allow_pickle=False)
    _check_numeric(array)
    return array


def _load_npz(path: Path) -> np.ndarray:
    if not zipfile.is_zipfile(path):
        raise _FormatError("not a .npz file (not a valid zip archive)")
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        key = next((k for k in _NPZ_KEYS if k in keys), None)
        if key is None:
            if len(keys) != 1:
                raise _FormatError(
                    f"cannot tell which array holds the points: expected a key named "
                    f"{' / '.join(repr(k) for k in _NPZ_KEYS)} or a single array, "
                    f"found keys {keys}"
                )
            key = keys[0]
        array = archive[key]
    _check_numeric(array)
    return array


# --------------------------------------------------------------------------- #
# text


def _load_text(path: Path, ext: str) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _FormatError(f"not a UTF-8/ASCII text file ({exc.reason})") from None
    lines = [
        line for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise _FormatError("file contains zero points")

    if ext == ".csv" and not _is_numeric_row(lines[0]):
        lines = lines[1:]  # header row of column names
    elif ext == ".pts" and re.fullmatch(r"\s*\d+\s*", lines[0]) and len(lines) > 1:
        declared = int(lines[0])
        lines = lines[1:]
        if declared != len(lines):
            raise _FormatError(
                f"point count line says {declared} points but {len(lines)} rows follow"
            )
    if not lines:
        raise _FormatError("file contains zero points")

    # np.loadtxt names the row/column of non-numeric tokens and of rows whose
    # number of columns differs from the first row's.
    return _parse_rows([line.replace(",", " ") for line in lines], "point")


def _is_numeric_row(line: str) -> bool:
    try:
        [float(tok) for tok in line.replace(",", " ").split()]
    except ValueError:
        return False
    return True


def _parse_rows(rows: list[str], what: str) -> np.ndarray:
    try:
        return np.loadtxt(rows, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as exc:
        reason = str(exc).split("; use `usecols`")[0]  # numpy's hint does not apply here
        raise _FormatError(f"malformed or truncated {what} data: {reason}") from None


# --------------------------------------------------------------------------- #
# PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}


def _split_header(data: bytes, terminator: bytes, kind: str) -> tuple[list[str], int]:
    """Return the header lines and the offset where the body starts."""
    match = re.search(rb"^" + terminator + rb"[^\n]*(\r?\n|$)", data, re.MULTILINE)
    if match is None:
        raise _FormatError(f"{kind} header is not terminated (no {terminator.decode()!r} line)")
    try:
        header = data[: match.start()].decode("ascii")
    except UnicodeDecodeError:
        raise _FormatError(f"{kind} header contains non-ASCII bytes") from None
    lines = [line.strip() for line in header.splitlines()]
    return lines, match.end()


def _load_ply(data: bytes) -> np.ndarray:
    if not re.match(rb"ply\r?\n", data):
        raise _FormatError("not a PLY file (missing 'ply' magic line)")
    lines, body_start = _split_header(data, rb"end_header", "PLY")

    fmt = None
    elements: list[dict] = []  # {"name", "count", "props": [(name, dtype|None for list)]}
    for line in lines[1:]:
        if not line or line.startswith(("comment", "obj_info")):
            continue
        tokens = line.split()
        if tokens[0] == "format":
            if len(tokens) < 2:
                raise _FormatError(f"malformed PLY format line {line!r}")
            fmt = tokens[1]
        elif tokens[0] == "element":
            if len(tokens) != 3 or not tokens[2].isdigit():
                raise _FormatError(f"malformed PLY element line {line!r}")
            elements.append({"name": tokens[1], "count": int(tokens[2]), "props": []})
        elif tokens[0] == "property":
            if not elements:
                raise _FormatError(f"PLY property before any element: {line!r}")
            if len(tokens) == 5 and tokens[1] == "list":
                if tokens[2] not in _PLY_TYPES or tokens[3] not in _PLY_TYPES:
                    raise _FormatError(f"unknown PLY list property types in {line!r}")
                elements[-1]["props"].append((tokens[4], None))
            elif len(tokens) == 3 and tokens[1] in _PLY_TYPES:
                elements[-1]["props"].append((tokens[2], _PLY_TYPES[tokens[1]]))
            else:
                raise _FormatError(f"malformed PLY property line {line!r}")
        else:
            raise _FormatError(f"unexpected PLY header line {line!r}")

    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _FormatError(f"unsupported or missing PLY format {fmt!r}")
    index = next((i for i, el in enumerate(elements) if el["name"] == "vertex"), None)
    if index is None:
        raise _FormatError("PLY file has no 'vertex' element")
    vertex = elements[index]
    names = [name for name, _ in vertex["props"]]
    if any(dtype is None for _, dtype in vertex["props"]):
        raise _FormatError("PLY vertex element has list properties, which are not supported")
    if len(set(names)) != len(names):
        raise _FormatError(f"PLY vertex element has duplicate properties {names}")
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise _FormatError(f"PLY vertex element lacks properties {missing} (has {names})")
    count = vertex["count"]
    if count == 0:
        raise _FormatError("file contains zero points")
    order = ["x", "y", "z"] + [n for n in names if n not in ("x", "y", "z")]

    body = data[body_start:]
    if fmt == "ascii":
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise _FormatError("PLY ascii body contains non-ASCII bytes") from None
        rows = [line for line in text.splitlines() if line.strip()]
        skip = sum(el["count"] for el in elements[:index])
        if len(rows) < skip + count:
            raise _FormatError(
                f"PLY file is truncated: header declares {count} vertices but only "
                f"{max(len(rows) - skip, 0)} vertex rows are present"
            )
        values = _parse_rows(rows[skip : skip + count], "PLY vertex")
        if values.shape != (count, len(names)):
            raise _FormatError(
                f"PLY vertex rows have {values.shape[1]} values, "
                f"header declares {len(names)} properties"
            )
        columns = {name: values[:, i] for i, name in enumerate(names)}
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        offset = 0
        for el in elements[:index]:
            if any(dtype is None for _, dtype in el["props"]):
                raise _FormatError(
                    f"binary PLY with a list-property element ({el['name']!r}) before the "
                    "vertex element is not supported"
                )
            offset += el["count"] * np.dtype([(n, endian + t) for n, t in el["props"]]).itemsize
        dtype = np.dtype([(n, endian + t) for n, t in vertex["props"]])
        needed = offset + count * dtype.itemsize
        if len(body) < needed:
            raise _FormatError(
                f"PLY file is truncated: header declares {count} vertices "
                f"({needed} bytes of data) but only {len(body)} bytes follow the header"
            )
        records = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        columns = {name: records[name] for name in names}
    return np.stack([columns[n].astype(np.float64) for n in order], axis=1)


# --------------------------------------------------------------------------- #
# PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8",
              ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _load_pcd(data: bytes) -> np.ndarray:
    lines, body_start = _split_header(data, rb"DATA", "PCD")
    data_line = data[: body_start].splitlines()[-1].decode("ascii", "replace").split()
    mode = data_line[1].lower() if len(data_line) > 1 else None

    header: dict[str, list[str]] = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise _FormatError(f"PCD header lacks the {key} line")
    fields = header["FIELDS"]
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(fields) == len(header["SIZE"]) == len(header["TYPE"]) == len(counts)):
        raise _FormatError("PCD header FIELDS/SIZE/TYPE/COUNT lines have different lengths")
    try:
        sizes = [int(s) for s in header["SIZE"]]
        counts = [int(c) for c in counts]
        width = int(header["WIDTH"][0]) if "WIDTH" in header else None
        height = int(header["HEIGHT"][0]) if "HEIGHT" in header else 1
        points = int(header["POINTS"][0]) if "POINTS" in header else None
    except (ValueError, IndexError):
        raise _FormatError("PCD header has a non-integer SIZE/COUNT/WIDTH/HEIGHT/POINTS") from None
    if points is None:
        if width is None:
            raise _FormatError("PCD header lacks both POINTS and WIDTH")
        points = width * height
    elif width is not None and width * height != points:
        raise _FormatError(
            f"PCD header POINTS {points} does not match WIDTH*HEIGHT {width}*{height}"
        )
    missing = [axis for axis in "xyz" if axis not in fields]
    if missing:
        raise _FormatError(f"PCD file lacks fields {missing} (has {fields})")
    if len(set(f for f in fields if f != "_")) != len([f for f in fields if f != "_"]):
        raise _FormatError(f"PCD header has duplicate fields {fields}")

    dtypes = []
    for name, size, typ, count in zip(fields, sizes, header["TYPE"], counts):
        code = _PCD_TYPES.get((typ.upper(), size))
        if code is None:
            raise _FormatError(f"PCD field {name!r} has unsupported TYPE {typ} SIZE {size}")
        if count < 1:
            raise _FormatError(f"PCD field {name!r} has COUNT {count}")
        dtypes.append(code)

    if points == 0:
        raise _FormatError("file contains zero points")

    body = data[body_start:]
    columns: dict[str, np.ndarray] = {}
    if mode == "ascii":
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise _FormatError("PCD ascii body contains non-ASCII bytes") from None
        rows = [line for line in text.splitlines() if line.strip()]
        if len(rows) != points:
            raise _FormatError(f"PCD header says POINTS {points} but {len(rows)} data rows follow")
        values = _parse_rows(rows, "PCD")
        if values.shape[1] != sum(counts):
            raise _FormatError(
                f"PCD data rows have {values.shape[1]} values, header declares {sum(counts)}"
            )
        start = 0
        for name, code, count in zip(fields, dtypes, counts):
            block = values[:, start : start + count]
            start += count
            if name in ("rgb", "rgba") and count == 1:
                block = block.astype(code)  # packed colour: recover the raw 32 bits
            columns[name] = block
    elif mode == "binary":
        dtype = np.dtype([
            (f"f{i}", "<" + code, (count,))
            for i, (code, count) in enumerate(zip(dtypes, counts))
        ])
        needed = points * dtype.itemsize
        if len(body) < needed:
            raise _FormatError(
                f"PCD file is truncated: header declares {points} points ({needed} bytes) "
                f"but only {len(body)} bytes of data follow the header"
            )
        records = np.frombuffer(body, dtype=dtype, count=points)
        for i, name in enumerate(fields):
            if name != "_":
                columns[name] = records[f"f{i}"]
    elif mode == "binary_compressed":
        raise _FormatError(
            "PCD 'DATA binary_compressed' is unsupported; re-save it as ascii or binary "
            "(e.g. pcl_convert_pcd_ascii_binary in.pcd out.pcd 1)"
        )
    else:
        raise _FormatError(f"unsupported PCD DATA type {mode!r}")

    out = [columns["x"][:, :1], columns["y"][:, :1], columns["z"][:, :1]]
    for name, code, count in zip(fields, dtypes, counts):
        if name in ("x", "y", "z", "_"):
            continue
        block = columns[name]
        if name in ("rgb", "rgba") and count == 1 and np.dtype(code).itemsize == 4:
            # native-endian copy of the 32 stored bits, reinterpreted as uint32
            packed = np.ascontiguousarray(block[:, 0], dtype=np.dtype(code).newbyteorder("="))
            packed = packed.view(np.uint32)
            rgb = [(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF]
            if name == "rgba":
                rgb.append((packed >> 24) & 0xFF)
            out.extend(channel[:, None] for channel in rgb)
        else:
            out.append(block)
    return np.concatenate([np.asarray(b, dtype=np.float64) for b in out], axis=1)


# --------------------------------------------------------------------------- #
# meshes


def _load_mesh(path: Path, ext: str, count: int, seed: int) -> np.ndarray:
    import trimesh  # hard dependency; imported lazily to keep package import fast

    kwargs = {"skip_materials": True} if ext == ".obj" else {}
    try:
        mesh = trimesh.load(str(path), file_type=ext[1:], force="mesh", **kwargs)
    except MemoryError:
        raise
    except Exception as exc:  # trimesh raises many types (NameError, IndexError, ...)
        raise _FormatError(
            f"could not parse the {ext[1:].upper()} mesh ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(mesh, trimesh.Trimesh):
        raise _FormatError(f"file did not load as a triangle mesh (got {type(mesh).__name__})")
    if len(mesh.faces) == 0:
        raise _FormatError("mesh has no faces to sample points from")
    area = float(mesh.area)
    if not np.isfinite(area) or area <= 0.0:
        raise _FormatError(f"mesh has zero or invalid surface area ({area})")
    samples, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(samples, dtype=np.float64)
