"""New formats (glb/gltf, mesh PLY, PLY in any element order, PCD binary_compressed, LAS/LAZ) and hostile files:
every failure of a reader is one `PointCloudFileError` naming the file, sizes are checked before allocation."""

import struct
import zipfile

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pointclip_hf.io import SUPPORTED_EXTENSIONS, PointCloudFileError, load_point_cloud

XYZ = np.random.default_rng(7).normal(size=(64, 3)).astype(np.float32)


def assert_on_box(points, low, high):
    assert np.all(points >= np.asarray(low) - 1e-5) and np.all(points <= np.asarray(high) + 1e-5)
    on_face = np.isclose(points, low, atol=1e-5) | np.isclose(points, high, atol=1e-5)
    assert on_face.any(axis=1).all()


# --------------------------------------------------------------------------- new formats


def two_box_scene():
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(extents=(1, 1, 1)), node_name="a")
    scene.add_geometry(
        trimesh.creation.box(extents=(1, 1, 1)),
        node_name="b",
        transform=trimesh.transformations.translation_matrix((3, 0, 0)),
    )
    return scene


def test_glb_scene_is_flattened_and_sampled_by_area(tmp_path):
    (tmp_path / "scene.glb").write_bytes(two_box_scene().export(file_type="glb"))
    points = load_point_cloud(tmp_path / "scene.glb", num_mesh_samples=4000)
    assert points.shape == (4000, 3)
    first = points[:, 0] < 1.5
    assert 1700 < first.sum() < 2300  # two boxes of equal area share the samples
    assert_on_box(points[first], (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    assert_on_box(points[~first], (2.5, -0.5, -0.5), (3.5, 0.5, 0.5))


def test_gltf_with_external_buffer(tmp_path):
    files = two_box_scene().export(file_type="gltf")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    points = load_point_cloud(tmp_path / "model.gltf", seed=3)
    assert points.shape == (2048, 3)
    np.testing.assert_array_equal(points, load_point_cloud(tmp_path / "model.gltf", seed=3))


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
def test_mesh_ply_is_sampled_like_other_meshes(tmp_path, encoding):
    box = trimesh.creation.box(extents=(1, 1, 1))
    (tmp_path / "box.ply").write_bytes(box.export(file_type="ply", encoding=encoding))
    box.export(tmp_path / "box.obj")
    from_ply = load_point_cloud(tmp_path / "box.ply")
    assert from_ply.shape == load_point_cloud(tmp_path / "box.obj").shape == (2048, 3)
    assert_on_box(from_ply, (-0.5,) * 3, (0.5,) * 3)


def ply_with_faces_first(path, quads=False):
    """A binary PLY whose list element `face` comes before `vertex` (a unit cube)."""
    vertices = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], "<f4")
    polygons = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    if not quads:
        polygons = [t for a, b, c, d in polygons for t in ((a, b, c), (a, c, d))]
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement face {len(polygons)}\n"
        "property list uchar int vertex_indices\nelement vertex 8\nproperty float x\n"
        "property float y\nproperty float z\nend_header\n"
    ).encode()
    body = b"".join(struct.pack(f"<B{len(p)}i", len(p), *p) for p in polygons) + vertices.tobytes()
    path.write_bytes(header + body)
    return path


@pytest.mark.parametrize("quads", [False, True])
def test_binary_ply_with_a_list_element_before_vertex(tmp_path, quads):
    points = load_point_cloud(ply_with_faces_first(tmp_path / "cube.ply", quads), num_mesh_samples=500)
    assert points.shape == (500, 3)
    assert_on_box(points, (0, 0, 0), (1, 1, 1))


def write_compressed_pcd(path, xyz, intensity, declared_size=None):
    import lzf

    columns = xyz.astype("<f4").T.tobytes() + intensity.astype("<f4").tobytes()
    compressed = lzf.compress(columns, len(columns) * 2 + 64)  # room for incompressible data
    header = (
        "VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        f"WIDTH {len(xyz)}\nHEIGHT 1\nPOINTS {len(xyz)}\nDATA binary_compressed\n"
    ).encode()
    sizes = struct.pack("<II", len(compressed), declared_size or len(columns))
    path.write_bytes(header + sizes + compressed)
    return path


def test_pcd_binary_compressed(tmp_path):
    pytest.importorskip("lzf")
    intensity = np.arange(64, dtype=np.float32)
    points = load_point_cloud(write_compressed_pcd(tmp_path / "c.pcd", XYZ, intensity))
    np.testing.assert_array_equal(points, np.column_stack([XYZ, intensity]))
    with pytest.raises(PointCloudFileError, match=r"d\.pcd.*expands to"):
        load_point_cloud(write_compressed_pcd(tmp_path / "d.pcd", XYZ, intensity, declared_size=10**9))


@pytest.mark.parametrize("ext", [".las", ".laz"])
def test_las_and_laz(tmp_path, ext):
    laspy = pytest.importorskip("laspy")
    if ext == ".laz":
        pytest.importorskip("lazrs")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    data = laspy.LasData(header)
    data.x, data.y, data.z = (XYZ[:, i].astype(np.float64) for i in range(3))
    data.intensity = np.arange(64, dtype=np.uint16)
    data.write(str(tmp_path / f"scan{ext}"))
    points = load_point_cloud(tmp_path / f"scan{ext}")
    np.testing.assert_allclose(points[:, :3], XYZ, atol=1e-3)
    np.testing.assert_array_equal(points[:, 3], np.arange(64))


def test_obj_with_a_non_utf8_comment(tmp_path):
    (tmp_path / "t.obj").write_bytes(b"# caf\xe9\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert load_point_cloud(tmp_path / "t.obj", num_mesh_samples=10).shape == (10, 3)


# --------------------------------------------------------------------------- hostile files


def npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npz_member(path, name, data, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr(name, data)
    return path


def test_npz_member_that_is_not_npy(tmp_path):
    path = write_npz_member(tmp_path / "a.npz", "points.txt", b"1 2 3\n")
    with pytest.raises(PointCloudFileError, match=r"a\.npz.*'points\.txt' is not a \.npy"):
        load_point_cloud(path)


def test_encrypted_npz_member(tmp_path):
    path = write_npz_member(tmp_path / "e.npz", "points.npy", npy_bytes(XYZ))
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        data[start + flag_offset] |= 0x1
    path.write_bytes(bytes(data))
    with pytest.raises(PointCloudFileError, match=r"e\.npz.*encrypted"):
        load_point_cloud(path)


def test_zip_bomb_npz_is_refused_before_expanding(tmp_path):
    path = write_npz_member(
        tmp_path / "bomb.npz",
        "points.npy",
        npy_bytes(np.zeros((1_000_000, 3), np.float32)),
        compress=zipfile.ZIP_DEFLATED,
    )
    assert path.stat().st_size < 100_000
    with pytest.raises(PointCloudFileError, match=r"bomb\.npz.*POINTCLIP_MAX_EXPANSION"):
        load_point_cloud(path)


def test_caps_are_overridable(tmp_path, monkeypatch):
    np.save(tmp_path / "c.npy", XYZ)
    monkeypatch.setenv("POINTCLIP_MAX_CLOUD_BYTES", "100")
    with pytest.raises(PointCloudFileError, match=r"c\.npy.*768 bytes.*POINTCLIP_MAX_CLOUD_BYTES"):
        load_point_cloud(tmp_path / "c.npy")
    monkeypatch.setenv("POINTCLIP_MAX_CLOUD_BYTES", "1000")
    assert load_point_cloud(tmp_path / "c.npy").shape == (64, 3)


NPY_HEADER = b"\x93NUMPY\x01\x00"


def npy_with_header(text: bytes) -> bytes:
    text = text.ljust(118) + b"\n"
    return NPY_HEADER + struct.pack("<H", len(text)) + text


@pytest.mark.parametrize(
    "header, words",
    [
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 3), }", "over the"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3), }", "truncated"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, ", "malformed .npy header"),
        (b"[1, 2, 3", "malformed .npy header"),
        (b"{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }", "dtype object"),
    ],
)
def test_hostile_npy_headers(tmp_path, header, words):
    (tmp_path / "h.npy").write_bytes(npy_with_header(header) + b"\0" * 48)
    with pytest.raises(PointCloudFileError, match=r"h\.npy") as info:
        load_point_cloud(tmp_path / "h.npy")
    assert words in str(info.value)


def test_big_endian_and_fortran_arrays_come_back_native(tmp_path):
    np.save(tmp_path / "b.npy", XYZ.astype(">f8"))
    np.save(tmp_path / "f.npy", np.asfortranarray(XYZ))
    for name in ("b.npy", "f.npy"):
        points = load_point_cloud(tmp_path / name)
        assert points.dtype == np.dtype("=f4") and points.flags.c_contiguous
        np.testing.assert_array_equal(points, XYZ)


def test_truncated_off(tmp_path):
    (tmp_path / "t.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n")
    with pytest.raises(PointCloudFileError, match=r"t\.off.*truncated.*4 vertices and 2 faces, 5 rows"):
        load_point_cloud(tmp_path / "t.off")


def test_nan_mesh_vertices_are_an_error(tmp_path):
    (tmp_path / "n.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\nnan 1 0\n3 0 1 2\n3 1 2 3\n")
    with pytest.raises(PointCloudFileError, match=r"n\.off.*1 vertices with NaN"):
        load_point_cloud(tmp_path / "n.off")


@pytest.mark.parametrize("line", ["POINTS -3", "WIDTH -3", "HEIGHT -1", "POINTS 1e3"])
def test_negative_or_non_integer_pcd_counts(tmp_path, line):
    key = line.split()[0]
    header = {"POINTS": "POINTS 3", "WIDTH": "WIDTH 3", "HEIGHT": "HEIGHT 1"}
    header[key] = line
    text = (
        "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        + "\n".join(header.values())
        + "\nDATA ascii\n0 0 0\n1 0 0\n0 1 0\n"
    )
    (tmp_path / "n.pcd").write_text(text)
    with pytest.raises(PointCloudFileError, match=rf"n\.pcd.*{key}.*not a non-negative integer"):
        load_point_cloud(tmp_path / "n.pcd")


def test_malformed_first_csv_row_is_an_error_not_a_header(tmp_path):
    (tmp_path / "m.csv").write_text("1,2,oops\n4,5,6\n7,8,9\n")
    with pytest.raises(PointCloudFileError, match=r"m\.csv.*row 1 mixes numbers and text"):
        load_point_cloud(tmp_path / "m.csv")
    (tmp_path / "h.csv").write_text("x,y,z\n4,5,6\n7,8,9\n")
    assert load_point_cloud(tmp_path / "h.csv").shape == (2, 3)


def test_ply_declaring_more_rows_than_bytes(tmp_path):
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\nproperty float x\n"
        b"property float y\nproperty float z\nend_header\n"
    )
    (tmp_path / "big.ply").write_bytes(header + b"\0" * 120)
    with pytest.raises(PointCloudFileError, match=r"big\.ply.*over the"):
        load_point_cloud(tmp_path / "big.ply")


# --------------------------------------------------------------------------- fuzzing


def valid_file_bytes(ext: str) -> bytes:
    """A small valid file of each format, for the fuzzer to corrupt."""
    tri = trimesh.creation.box()
    if ext == ".npy":
        return npy_bytes(XYZ[:4])
    if ext in (".xyz", ".txt", ".pts", ".csv"):
        return b"0 0 0\n1 0 0\n0 1 0\n"
    if ext == ".pcd":
        return (
            b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA binary\n"
            + XYZ[:2].astype("<f4").tobytes()
        )
    if ext in (".ply", ".off", ".obj", ".stl", ".glb"):
        exported = tri.export(file_type=ext[1:])
        return exported.encode() if isinstance(exported, str) else exported
    return b""


FUZZED_EXTENSIONS = [ext for ext in SUPPORTED_EXTENSIONS if ext not in (".las", ".laz", ".gltf")]


@pytest.mark.parametrize("ext", FUZZED_EXTENSIONS + [".las", ".gltf"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=2000), keep_prefix=st.booleans())
def test_random_bytes_raise_only_the_documented_error(tmp_path, ext, data, cut, keep_prefix):
    """Random bytes, or a valid file cut short and followed by random bytes: a cloud or a `PointCloudFileError`."""
    content = valid_file_bytes(ext)[:cut] + data if keep_prefix else data
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(content)
    try:
        points = load_point_cloud(path, num_mesh_samples=16)
    except PointCloudFileError as error:
        assert "fuzz" in str(error) and "\n" not in str(error).strip()
    else:
        assert points.dtype == np.float32 and points.ndim == 2 and np.isfinite(points[:, :3]).all()


# --------------------------------------------------------------------------- h5 folders


def test_h5_data_that_is_a_group_or_declares_far_more_than_stored(tmp_path):
    h5py = pytest.importorskip("h5py")
    from pointclip_hf.data import load_point_cloud_dataset

    group = tmp_path / "modelnet40_group"
    group.mkdir()
    with h5py.File(group / "ply_data_train0.h5", "w") as handle:
        handle.create_group("data")
        handle.create_dataset("label", data=np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.*'data' is a Group"):
        load_point_cloud_dataset(group)

    sparse = tmp_path / "modelnet40_sparse"
    sparse.mkdir()
    with h5py.File(sparse / "ply_data_train0.h5", "w") as handle:
        handle.create_dataset("data", shape=(20_000, 2048, 3), dtype="f4", chunks=(1, 2048, 3))  # never written
        handle.create_dataset("label", data=np.zeros((20_000, 1)))
    assert (sparse / "ply_data_train0.h5").stat().st_size < 200_000
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.*POINTCLIP_MAX_EXPANSION"):
        load_point_cloud_dataset(sparse)


def test_las_header_declaring_billions_of_records(tmp_path):
    pytest.importorskip("laspy")
    header = bytearray(b"LASF" + bytes(223))
    header[24:26] = bytes([1, 2])  # version 1.2
    header[94:96] = (227).to_bytes(2, "little")
    header[96:100] = (227).to_bytes(4, "little")
    header[100:104] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "v.las").write_bytes(bytes(header))
    with pytest.raises(PointCloudFileError, match=r"v\.las.*4,294,967,295 variable-length records"):
        load_point_cloud(tmp_path / "v.las")


def test_class_folder_dataset_reads_the_new_formats(tmp_path):
    from pointclip_hf.data import load_point_cloud_dataset

    (tmp_path / "tree" / "box").mkdir(parents=True)
    (tmp_path / "tree" / "cube").mkdir(parents=True)
    (tmp_path / "tree" / "box" / "a.glb").write_bytes(two_box_scene().export(file_type="glb"))
    (tmp_path / "tree" / "box" / "b.ply").write_bytes(trimesh.creation.box().export(file_type="ply"))
    ply_with_faces_first(tmp_path / "tree" / "cube" / "c.ply")
    dataset = load_point_cloud_dataset(tmp_path / "tree")
    assert dataset.features["label"].names == ["box", "cube"]
    assert [len(points) for points in dataset["points"]] == [2048, 2048, 2048]


def test_laz_chunk_table_declaring_billions_of_chunks(tmp_path):
    laspy = pytest.importorskip("laspy")
    pytest.importorskip("lazrs")
    data = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    data.x, data.y, data.z = XYZ[:, 0], XYZ[:, 1], XYZ[:, 2]
    data.write(str(tmp_path / "c.laz"))
    raw = bytearray((tmp_path / "c.laz").read_bytes())
    table = struct.unpack_from("<q", raw, struct.unpack_from("<I", raw, 96)[0])[0]
    raw[table + 4 : table + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    (tmp_path / "c.laz").write_bytes(bytes(raw))
    with pytest.raises(PointCloudFileError, match=r"c\.laz.*4,294,967,280 chunks"):
        load_point_cloud(tmp_path / "c.laz")


def test_coordinates_beyond_float32_are_named_as_such(tmp_path):
    cloud = np.zeros((4, 3))
    cloud[1, 2] = 1e300
    np.save(tmp_path / "o.npy", cloud)
    with pytest.raises(PointCloudFileError, match=r"o\.npy.*point 1 has a coordinate beyond the float32 range"):
        load_point_cloud(tmp_path / "o.npy")
