"""`.ply` files: points by `plyfile` (binary: memory-mapped; ascii: one table parse, `plyfile` for the odd file), any
element order; a `.ply` with faces is a mesh, read by `trimesh` and sampled like the other meshes."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from .arrays import float_dtype_for
from .errors import FormatError, check_declared_size, check_rules
from .meshes import load_mesh
from .text import read_table

_TYPE_BYTES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_MAX_HEADER_BYTES = 1 << 20
_HEADER_END = re.compile(rb"^end_header[^\n]*(\r?\n|$)", re.MULTILINE)


@dataclass
class PLYElement:
    """An element a PLY header declares: its name, row count, least bytes per row, and `(name, type)` of each
    property (`type` is `"list"` for a list property)."""

    name: str
    count: int
    row_bytes: int
    properties: list[tuple[str, str]]


def load_ply(path: Path, num_samples: int, seed: int) -> np.ndarray:
    """The points of a `.ply`: its vertices (`x, y, z`, then other scalar properties), or, when it has faces,
    `num_samples` points sampled over the surface."""
    header, body_offset, binary = _read_header(path)
    elements = _elements(header, binary)
    _check_declared_sizes(elements, path.stat().st_size - body_offset)
    vertex = next((element for element in elements if element.name == "vertex"), None)
    if vertex is not None and any(element.name == "face" and element.count > 0 for element in elements):
        return load_mesh(path, ".ply", num_samples, seed)
    names = [name for name, _ in vertex.properties] if vertex is not None else []
    missing = [axis for axis in "xyz" if axis not in names]
    check_rules([
        (vertex is not None, "PLY file has no 'vertex' element"),
        (vertex is None or vertex.count > 0, "file contains zero points"),
        (vertex is None or all(kind != "list" for _, kind in vertex.properties),
         "PLY vertex element has list properties, which are not supported"),
        (vertex is None or not missing, f"PLY vertex element lacks properties {missing} (has {names})"),
    ])  # fmt: skip
    order = ["x", "y", "z"] + [name for name in names if name not in ("x", "y", "z")]
    table = None if binary else _ascii_vertex_table(path, body_offset, elements, vertex)
    if table is not None:
        return table[:, [names.index(name) for name in order]]
    rows = _plyfile_vertex(path)[order]
    dtype = float_dtype_for(rows.dtype[name] for name in order)
    columns = structured_to_unstructured(rows, dtype=dtype)  # a view of the mapped file when the types allow
    return columns if columns.flags.owndata else np.array(columns)  # one pass over the file, into memory


def _read_header(path: Path) -> tuple[str, int, bool]:
    """The header text, the offset of the body and whether the body is binary, reading no more than the header (up
    to 1 MiB); refused unless it has the `ply` magic line, a `format` line and an `end_header` line."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        magic = re.match(rb"ply\r?\n", head) is not None
        end = _HEADER_END.search(head)
        if magic and end is None and len(head) == 1 << 16:
            head += handle.read(_MAX_HEADER_BYTES - len(head))
            end = _HEADER_END.search(head)
    header = head[: end.start() if end else _MAX_HEADER_BYTES].decode("ascii", "replace")
    encoding = re.search(r"^format[ \t]+(\S+)", header, re.MULTILINE)
    encoding = encoding.group(1) if encoding else None
    formats = ("ascii", "binary_little_endian", "binary_big_endian")
    check_rules([
        (magic, "not a PLY file (missing 'ply' magic line)"),
        (end is not None, "PLY header is not terminated (no 'end_header' line)"),
        (encoding in formats, "PLY header lacks a 'format ascii|binary_little_endian|binary_big_endian' line"),
    ])  # fmt: skip
    return header, end.end(), encoding != "ascii"


def _elements(header: str, binary: bool) -> list[PLYElement]:
    elements: list[PLYElement] = []
    for tokens in (line.split() for line in header.splitlines()):
        if len(tokens) == 3 and tokens[0] == "element" and tokens[2].isdigit():
            elements.append(PLYElement(tokens[1], int(tokens[2]), 0, []))
        elif tokens[:1] == ["property"] and len(tokens) >= 3 and elements:
            is_list = tokens[1] == "list" and len(tokens) > 3
            width = _TYPE_BYTES.get(tokens[2] if is_list else tokens[1], 1)
            elements[-1].row_bytes += width if binary else 2
            elements[-1].properties.append((tokens[-1], "list" if is_list else tokens[1]))
    return elements


def _check_declared_sizes(elements: list[PLYElement], body_bytes: int) -> None:
    """Refuse element counts that need more bytes than the file holds (a row takes at least one byte, even with no
    properties), before `plyfile` allocates or loops over them."""
    needed = 0
    for element in elements:
        check_declared_size(element.count * max(element.row_bytes, 8), f"PLY element {element.name!r} of "
                                                                        f"{element.count:,} rows")  # fmt: skip
        needed += element.count * max(element.row_bytes, 1)
    if needed > body_bytes:
        raise FormatError(f"PLY file is truncated: the header needs at least {needed:,} bytes, {body_bytes:,} follow")


def _ascii_vertex_table(path: Path, body_offset: int, elements: list[PLYElement], vertex: PLYElement):
    """The vertex table of an ascii PLY in one parse (rows of the elements before it skipped), or `None`
    when the rows do not parse as that table (`plyfile` then reads the file, and names what is wrong)."""
    with open(path, "rb") as handle:
        handle.seek(body_offset)
        body = handle.read()
    skip = sum(element.count for element in elements[: elements.index(vertex)])
    if skip:
        parts = body.split(b"\n", skip)
        body = parts[-1] if len(parts) > skip else b""
    table = read_table(body, rows=vertex.count)
    return table if table is not None and table.shape == (vertex.count, len(vertex.properties)) else None


def _plyfile_vertex(path: Path) -> np.ndarray:
    from plyfile import PlyData, PlyParseError

    try:
        with open(path, "rb") as handle:
            return PlyData.read(handle)["vertex"].data  # binary elements are memory-mapped, then copied once
    except PlyParseError as error:  # its message names the row but not that the file is malformed or cut short
        raise FormatError(f"malformed or truncated PLY file ({error})") from None
