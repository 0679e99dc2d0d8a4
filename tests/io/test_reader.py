"""Tests for pointclip_hf.io.load_point_cloud.

Every format is written into ``tmp_path`` by the small writers below and read
back; binary PLY/PCD are produced with numpy structured arrays so the bytes on
disk are independent of the reader under test.
"""

import pickle
import struct

import numpy as np
import pytest

from pointclip_hf.io import SUPPORTED_EXTENSIONS, load_point_cloud

RNG = np.random.default_rng(1234)
XYZ = RNG.normal(size=(17, 3)).astype(np.float32)
NORMALS = RNG.normal(size=(17, 3)).astype(np.float32)
COLOURS = RNG.integers(0, 256, size=(17, 3)).astype(np.uint8)


# --------------------------------------------------------------------------- #
# tiny writers


def write_ply(path, columns, fmt="ascii", faces=None, extra_header="", truncate=0, element_before=None):
    """columns: list of (name, ply_type, 1-D array). faces: int array [F, 3]."""
    n = len(columns[0][2])
    endian = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt, "")
    np_type = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "short": "i2"}
    lines = ["ply", f"format {fmt} 1.0", "comment written by test_point_cloud_io"]
    if element_before is not None:
        lines += [f"element {element_before[0]} {len(element_before[1])}", "property float w"]
    lines.append(f"element vertex {n}")
    lines += [f"property {t} {name}" for name, t, _ in columns]
    if faces is not None:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    if extra_header:
        lines.append(extra_header)
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")

    if fmt == "ascii":
        rows = []
        if element_before is not None:
            rows += [f"{v}" for v in element_before[1]]
        rows += [" ".join(repr(c[2][i].item()) for c in columns) for i in range(n)]
        if faces is not None:
            rows += [f"{len(f)} " + " ".join(str(int(v)) for v in f) for f in faces]
        body = ("\n".join(rows) + "\n").encode("ascii")
    else:
        body = b""
        if element_before is not None:
            body += np.asarray(element_before[1], dtype=endian + "f4").tobytes()
        dtype = np.dtype([(name, endian + np_type[t]) for name, t, _ in columns])
        rec = np.empty(n, dtype=dtype)
        for name, _, values in columns:
            rec[name] = values
        body += rec.tobytes()
        if faces is not None:
            for f in faces:
                body += struct.pack(endian + "B3i", 3, *(int(v) for v in f))
    data = header + body
    if truncate:
        data = data[:-truncate]
    path.write_bytes(data)
    return path


def write_pcd(path, fields, mode="ascii", points_override=None, width_override=None):
    """fields: list of (name, TYPE, SIZE, 2-D array [N, COUNT])."""
    n = len(fields[0][3])
    header = [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS " + " ".join(f[0] for f in fields),
        "SIZE " + " ".join(str(f[2]) for f in fields),
        "TYPE " + " ".join(f[1] for f in fields),
        "COUNT " + " ".join(str(f[3].shape[1]) for f in fields),
        f"WIDTH {n if width_override is None else width_override}",
        "HEIGHT 1",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {n if points_override is None else points_override}",
        f"DATA {mode}",
    ]
    data = ("\n".join(header) + "\n").encode("ascii")
    if mode == "ascii":
        rows = []
        for i in range(n):
            rows.append(" ".join(" ".join(repr(v.item()) for v in f[3][i]) for f in fields))
        data += ("\n".join(rows) + "\n").encode("ascii")
    elif mode == "binary":
        dtype = np.dtype(
            [
                (f"f{i}", "<" + {"F": "f", "I": "i", "U": "u"}[f[1]] + str(f[2]), (f[3].shape[1],))
                for i, f in enumerate(fields)
            ]
        )
        rec = np.empty(n, dtype=dtype)
        for i, f in enumerate(fields):
            rec[f"f{i}"] = f[3]
        data += rec.tobytes()
    else:
        data += b"\x00" * 64
    path.write_bytes(data)
    return path


def write_cube_off(path):
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    # vertex index = 4*ix + 2*iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = ["OFF", "# unit cube", f"{len(v)} {len(quads)} 0"]
    lines += [" ".join(str(c) for c in row) for row in v]
    lines += ["4 " + " ".join(str(i) for i in q) for q in quads]
    path.write_text("\n".join(lines) + "\n")
    return path


def cube_triangles():
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return v, np.array(tris)


def assert_on_unit_cube(points):
    assert np.all(np.abs(points) <= 0.5 + 1e-6)
    assert np.all(np.isclose(np.abs(points), 0.5, atol=1e-6).any(axis=1))


# --------------------------------------------------------------------------- #
# numpy formats


def test_supported_extensions_lists_every_format():
    assert set(SUPPORTED_EXTENSIONS) == {
        ".npy",
        ".npz",
        ".xyz",
        ".txt",
        ".pts",
        ".csv",
        ".ply",
        ".pcd",
        ".off",
        ".obj",
        ".stl",
        ".glb",
        ".gltf",
        ".las",
        ".laz",
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_npy_round_trip(tmp_path, dtype):
    data = np.hstack([XYZ, NORMALS]).astype(dtype)
    np.save(tmp_path / "a.npy", data)
    out = load_point_cloud(tmp_path / "a.npy")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, data.astype(np.float32))


def test_npy_fortran_order_output_is_c_contiguous(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(XYZ.astype(np.float64)))
    out = load_point_cloud(str(tmp_path / "f.npy"))
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, XYZ)


def test_npy_object_array_is_not_unpickled(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, 2, 3]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="o.npy"):
        load_point_cloud(tmp_path / "o.npy")


def test_pickle_file_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("pickle was loaded",))

    (tmp_path / "p.npy").write_bytes(pickle.dumps(Boom()))
    (tmp_path / "p.npz").write_bytes(pickle.dumps(Boom()))
    for name in ("p.npy", "p.npz"):
        with pytest.raises(ValueError, match=r"p\.np[yz]"):
            load_point_cloud(tmp_path / name)


@pytest.mark.parametrize("shape", [(17,), (17, 2), (2, 17, 3), (0, 3)])
def test_npy_bad_shapes(tmp_path, shape):
    np.save(tmp_path / "s.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match="s.npy"):
        load_point_cloud(tmp_path / "s.npy")


def test_npy_truncated(tmp_path):
    np.save(tmp_path / "t.npy", XYZ)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-20])
    with pytest.raises(ValueError, match="t.npy"):
        load_point_cloud(tmp_path / "t.npy")


@pytest.mark.parametrize("key", ["points", "xyz", "data", "whatever"])
def test_npz_keys(tmp_path, key):
    np.savez(tmp_path / "a.npz", **{key: XYZ})
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.npz"), XYZ)


def test_npz_prefers_points_key(tmp_path):
    np.savez(tmp_path / "a.npz", labels=np.zeros(17), points=XYZ, data=XYZ * 2)
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.npz"), XYZ)


def test_npz_ambiguous_lists_keys(tmp_path):
    np.savez(tmp_path / "a.npz", foo=XYZ, bar=XYZ)
    with pytest.raises(ValueError, match=r"a\.npz.*foo.*bar|a\.npz.*bar.*foo"):
        load_point_cloud(tmp_path / "a.npz")


def test_npz_compressed_and_not_a_zip(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", xyz=XYZ)
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "c.npz"), XYZ)
    (tmp_path / "bad.npz").write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match=r"bad\.npz.*zip"):
        load_point_cloud(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- #
# text formats


@pytest.mark.parametrize("ext", [".xyz", ".txt", ".pts"])
def test_text_whitespace_round_trip(tmp_path, ext):
    data = np.hstack([XYZ, NORMALS])
    lines = ["# a comment", ""] + ["  ".join(repr(float(v)) for v in row) for row in data]
    lines.insert(5, "   ")
    lines.insert(7, "\t# indented comment")
    path = tmp_path / f"a{ext}"
    path.write_text("\n".join(lines) + "\n")
    out = load_point_cloud(path)
    assert out.shape == (17, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out, data)


def test_text_tabs_and_commas(tmp_path):
    (tmp_path / "a.txt").write_text("1\t2\t3\n4,5,6\n7, 8, 9\n")
    np.testing.assert_array_equal(
        load_point_cloud(tmp_path / "a.txt"), np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    )


def test_csv_with_header(tmp_path):
    data = np.hstack([XYZ, NORMALS])
    rows = ["x,y,z,nx,ny,nz"] + [",".join(repr(float(v)) for v in r) for r in data]
    (tmp_path / "a.csv").write_text("\r\n".join(rows) + "\r\n")
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.csv"), data)


def test_csv_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3\n4,5,6\n")
    assert load_point_cloud(tmp_path / "a.csv").shape == (2, 3)


def test_pts_with_count_line(tmp_path):
    (tmp_path / "a.pts").write_text("2\n1 2 3 10\n4 5 6 20\n")
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.pts"), [[1, 2, 3, 10], [4, 5, 6, 20]])
    (tmp_path / "b.pts").write_text("3\n1 2 3\n4 5 6\n")
    with pytest.raises(ValueError, match=r"b\.pts.*3 points.*2 rows"):
        load_point_cloud(tmp_path / "b.pts")


@pytest.mark.parametrize(
    "content, words",
    [
        ("1 2 3\n4 5 abc\n", "abc"),
        ("1 2\n3 4\n", "3 columns"),
        ("1 2 3\n4 5 6 7\n", "column"),
        ("# only comments\n\n", "zero points"),
        ("x y z\n1 2 3\n", "x"),  # a header row is only skipped for .csv
    ],
)
def test_text_errors(tmp_path, content, words):
    path = tmp_path / "bad.xyz"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.xyz") as info:
        load_point_cloud(path)
    assert words in str(info.value)


def test_text_binary_garbage(tmp_path):
    (tmp_path / "g.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match="g.txt"):
        load_point_cloud(tmp_path / "g.txt")


# --------------------------------------------------------------------------- #
# PLY


PLY_FORMATS = ["ascii", "binary_little_endian", "binary_big_endian"]


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_ply_xyz_only(tmp_path, fmt):
    cols = [("x", "float", XYZ[:, 0]), ("y", "float", XYZ[:, 1]), ("z", "float", XYZ[:, 2])]
    out = load_point_cloud(write_ply(tmp_path / "a.ply", cols, fmt))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, XYZ)


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_ply_extra_properties(tmp_path, fmt):
    # properties deliberately not in x, y, z order
    cols = [
        ("nx", "float", NORMALS[:, 0]),
        ("z", "double", XYZ[:, 2].astype(np.float64)),
        ("x", "float", XYZ[:, 0]),
        ("ny", "float", NORMALS[:, 1]),
        ("y", "float", XYZ[:, 1]),
        ("nz", "float", NORMALS[:, 2]),
        ("red", "uchar", COLOURS[:, 0]),
        ("green", "uchar", COLOURS[:, 1]),
        ("blue", "uchar", COLOURS[:, 2]),
    ]
    out = load_point_cloud(write_ply(tmp_path / "a.ply", cols, fmt))
    expected = np.column_stack([XYZ, NORMALS[:, 0], NORMALS[:, 1], NORMALS[:, 2], COLOURS])
    assert out.shape == (17, 9)
    np.testing.assert_array_equal(out, expected.astype(np.float32))


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_ply_scalar_element_before_vertex(tmp_path, fmt):
    cols = [("x", "float", XYZ[:, 0]), ("y", "float", XYZ[:, 1]), ("z", "float", XYZ[:, 2])]
    path = write_ply(tmp_path / "a.ply", cols, fmt, element_before=("camera", [1.5, 2.5]))
    np.testing.assert_array_equal(load_point_cloud(path), XYZ)


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_ply_truncated(tmp_path, fmt):
    cols = [("x", "float", XYZ[:, 0]), ("y", "float", XYZ[:, 1]), ("z", "float", XYZ[:, 2])]
    path = write_ply(tmp_path / "t.ply", cols, fmt, truncate=40)
    with pytest.raises(ValueError, match=r"t\.ply.*(truncated|values)"):
        load_point_cloud(path)


def test_ply_missing_coordinate(tmp_path):
    cols = [("x", "float", XYZ[:, 0]), ("y", "float", XYZ[:, 1])]
    with pytest.raises(ValueError, match=r"m\.ply.*'z'"):
        load_point_cloud(write_ply(tmp_path / "m.ply", cols, "binary_little_endian"))


def test_ply_zero_vertices(tmp_path):
    cols = [(a, "float", np.zeros(0, np.float32)) for a in "xyz"]
    with pytest.raises(ValueError, match=r"z\.ply.*zero points"):
        load_point_cloud(write_ply(tmp_path / "z.ply", cols, "binary_little_endian"))


@pytest.mark.parametrize(
    "data, words",
    [
        (b"not a ply at all\n", "magic"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "end_header"),
        (b"ply\nformat binary_middle_endian 1.0\nend_header\n", "format"),
        (b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int v\nend_header\n3 0 1 2\n", "vertex"),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n1 2 oops\n",
            "oops",
        ),
    ],
)
def test_ply_malformed(tmp_path, data, words):
    (tmp_path / "bad.ply").write_bytes(data)
    with pytest.raises(ValueError, match=r"bad\.ply") as info:
        load_point_cloud(tmp_path / "bad.ply")
    assert words in str(info.value)


def test_ply_crlf_header(tmp_path):
    data = (
        b"ply\r\nformat binary_little_endian 1.0\r\nelement vertex 17\r\n"
        b"property float x\r\nproperty float y\r\nproperty float z\r\nend_header\r\n"
    )
    (tmp_path / "c.ply").write_bytes(data + XYZ.astype("<f4").tobytes())
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "c.ply"), XYZ)


# --------------------------------------------------------------------------- #
# PCD


def _pcd_fields():
    return [
        ("x", "F", 4, XYZ[:, :1]),
        ("y", "F", 4, XYZ[:, 1:2]),
        ("z", "F", 4, XYZ[:, 2:3]),
        ("normal", "F", 4, NORMALS),  # COUNT 3
        ("_", "U", 1, np.zeros((17, 4), np.uint8)),  # padding, dropped
        ("intensity", "U", 2, np.arange(17, dtype=np.uint16)[:, None]),
    ]


@pytest.mark.parametrize("mode", ["ascii", "binary"])
def test_pcd_xyz_only(tmp_path, mode):
    fields = _pcd_fields()[:3]
    out = load_point_cloud(write_pcd(tmp_path / "a.pcd", fields, mode))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, XYZ)


@pytest.mark.parametrize("mode", ["ascii", "binary"])
def test_pcd_extra_fields(tmp_path, mode):
    out = load_point_cloud(write_pcd(tmp_path / "a.pcd", _pcd_fields(), mode))
    expected = np.column_stack([XYZ, NORMALS, np.arange(17)]).astype(np.float32)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mode", ["ascii", "binary"])
def test_pcd_packed_rgb_unpacked(tmp_path, mode):
    r, g, b = (COLOURS[:, i].astype(np.uint32) for i in range(3))
    packed = ((r << 16) | (g << 8) | b).astype(np.uint32)
    fields = [("rgb", "U", 4, packed[:, None])] + _pcd_fields()[:3]
    out = load_point_cloud(write_pcd(tmp_path / "a.pcd", fields, mode))
    np.testing.assert_array_equal(out, np.hstack([XYZ, COLOURS]).astype(np.float32))

    # PCL's usual encoding: the same 32 bits stored as a float ("TYPE F").
    fields = _pcd_fields()[:3] + [("rgb", "F", 4, packed.view(np.float32)[:, None])]
    out = load_point_cloud(write_pcd(tmp_path / "f.pcd", fields, "binary"))
    np.testing.assert_array_equal(out, np.hstack([XYZ, COLOURS]).astype(np.float32))


def test_pcd_nan_points_dropped(tmp_path):
    xyz = XYZ.copy()
    xyz[[2, 5], 1] = np.nan
    fields = [("x", "F", 4, xyz[:, :1]), ("y", "F", 4, xyz[:, 1:2]), ("z", "F", 4, xyz[:, 2:3])]
    out = load_point_cloud(write_pcd(tmp_path / "n.pcd", fields, "binary"))
    np.testing.assert_array_equal(out, np.delete(XYZ, [2, 5], axis=0))


def test_pcd_binary_compressed_garbage(tmp_path):
    path = write_pcd(tmp_path / "c.pcd", _pcd_fields()[:3], "binary_compressed")
    with pytest.raises(ValueError, match=r"c\.pcd.*binary_compressed"):
        load_point_cloud(path)


def test_pcd_points_mismatch(tmp_path):
    path = write_pcd(tmp_path / "m.pcd", _pcd_fields()[:3], "binary", points_override=20)
    with pytest.raises(ValueError, match=r"m\.pcd.*POINTS"):
        load_point_cloud(path)


@pytest.mark.parametrize("mode", ["ascii", "binary"])
def test_pcd_more_points_declared_than_present(tmp_path, mode):
    path = write_pcd(tmp_path / "m.pcd", _pcd_fields()[:3], mode, points_override=20, width_override=20)
    with pytest.raises(ValueError, match=r"m\.pcd.*(truncated|POINTS)"):
        load_point_cloud(path)


def test_pcd_missing_xyz_and_header(tmp_path):
    fields = [("x", "F", 4, XYZ[:, :1]), ("y", "F", 4, XYZ[:, 1:2])]
    with pytest.raises(ValueError, match=r"a\.pcd.*'z'"):
        load_point_cloud(write_pcd(tmp_path / "a.pcd", fields, "ascii"))
    (tmp_path / "h.pcd").write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n")
    with pytest.raises(ValueError, match=r"h\.pcd.*DATA"):
        load_point_cloud(tmp_path / "h.pcd")


# --------------------------------------------------------------------------- #
# meshes


def test_off_cube_sampling(tmp_path):
    path = write_cube_off(tmp_path / "cube.off")
    a = load_point_cloud(path, num_mesh_samples=500, seed=3)
    b = load_point_cloud(path, num_mesh_samples=500, seed=3)
    c = load_point_cloud(path, num_mesh_samples=500, seed=4)
    assert a.shape == (500, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert_on_unit_cube(a)
    # uniform by area: each of the six faces gets roughly 1/6 of the samples
    big = load_point_cloud(path, num_mesh_samples=6000)
    axis = np.argmax(np.abs(big), axis=1)
    face_id = axis * 2 + (big[np.arange(len(big)), axis] > 0)
    counts = np.bincount(face_id, minlength=6)
    assert counts.min() > 800 and counts.max() < 1200


def test_default_sample_count(tmp_path):
    assert load_point_cloud(write_cube_off(tmp_path / "cube.off")).shape == (2048, 3)


def test_obj_and_stl_cube(tmp_path):
    v, tris = cube_triangles()
    obj = ["# cube", "o cube"] + [f"v {x} {y} {z}" for x, y, z in v]
    obj += ["f " + " ".join(str(i + 1) for i in t) for t in tris]
    (tmp_path / "cube.obj").write_text("\n".join(obj) + "\n")

    # binary STL: 80-byte header, uint32 count, then per triangle normal+3 vertices+attr
    stl = b"\0" * 80 + struct.pack("<I", len(tris))
    for t in tris:
        stl += struct.pack("<12fH", 0, 0, 0, *v[t].ravel(), 0)
    (tmp_path / "cube.stl").write_bytes(stl)

    for name in ("cube.obj", "cube.stl"):
        pts = load_point_cloud(tmp_path / name, num_mesh_samples=300, seed=0)
        assert pts.shape == (300, 3)
        assert_on_unit_cube(pts)
        np.testing.assert_array_equal(pts, load_point_cloud(tmp_path / name, num_mesh_samples=300))


def test_uppercase_extension(tmp_path):
    write_cube_off(tmp_path / "CUBE.OFF")
    assert load_point_cloud(tmp_path / "CUBE.OFF", num_mesh_samples=10).shape == (10, 3)
    np.save(tmp_path / "a.npy", XYZ)
    (tmp_path / "a.npy").rename(tmp_path / "A.NPY")
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "A.NPY"), XYZ)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("nofaces.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
        ("nofaces.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("short.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n", "OFF"),
        ("flat.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "area"),
        ("notoff.off", "hello world\n", "OFF"),
    ],
)
def test_mesh_errors(tmp_path, name, content, words):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")) as info:
        load_point_cloud(tmp_path / name)
    assert words in str(info.value)


def test_bad_sample_count(tmp_path):
    path = write_cube_off(tmp_path / "cube.off")
    with pytest.raises(ValueError, match="positive"):
        load_point_cloud(path, num_mesh_samples=0)


# --------------------------------------------------------------------------- #
# generic errors


def test_unknown_extension(tmp_path):
    path = tmp_path / "cloud.e57"
    path.write_bytes(b"ASTM-E57")
    with pytest.raises(ValueError, match=r"cloud\.e57.*\.npy.*\.ply.*\.off"):
        load_point_cloud(path)
    with pytest.raises(ValueError, match="supported"):
        load_point_cloud(tmp_path / "no_extension")


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_missing_file(tmp_path, ext):
    path = tmp_path / f"missing{ext}"
    with pytest.raises(FileNotFoundError, match="missing"):
        load_point_cloud(path)


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_empty_file(tmp_path, ext):
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.*(empty|zero)"):
        load_point_cloud(path)


def test_directory_is_rejected(tmp_path):
    (tmp_path / "dir.ply").mkdir()
    with pytest.raises(ValueError, match="regular file"):
        load_point_cloud(tmp_path / "dir.ply")


def test_nan_coordinates_are_an_error_outside_pcd(tmp_path):
    cloud = np.zeros((4, 3), np.float32)
    cloud[2, 1] = np.nan
    np.save(tmp_path / "bad.npy", cloud)
    with pytest.raises(ValueError, match="point 2 has a NaN"):
        load_point_cloud(tmp_path / "bad.npy")
