"""Issue 17's reader cases: sizes checked before a library allocates (LAZ under an address-space limit, PLY elements,
h5 labels, text files, demo uploads), nothing opened that can hang, georeferenced clouds kept sharp, a non-UTF-8 file
name read with its folder, and the last cut-short files named."""

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pointclip_hf import PointCLIPFeatureExtractor
from pointclip_hf.io import PointCloudFileError, load_point_cloud

ROOT = Path(__file__).resolve().parents[2]
UTM = np.array([500_000.0, 4_500_000.0, 100.0])


def object_cloud(size_m: float = 2.0, n: int = 5000) -> np.ndarray:
    """A chair-sized cloud (`size_m` across) around the origin, on a millimetre grid as a LAS file stores it."""
    rng = np.random.default_rng(5)
    points = rng.uniform(-size_m / 2, size_m / 2, size=(n, 3)) * np.array([1.0, 0.5, 0.8])
    return np.round(points, 3)


def laz_bytes(xyz: np.ndarray, point_format: int = 6, version: str = "1.4", compress: bool = True,
              offsets=None) -> bytes:  # fmt: skip
    laspy = pytest.importorskip("laspy")
    if compress:
        pytest.importorskip("lazrs")
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.zeros(3) if offsets is None else np.asarray(offsets)
    data = laspy.LasData(header)
    data.x, data.y, data.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    buffer = io.BytesIO()
    data.write(buffer, do_compress=compress)
    return buffer.getvalue()


def run_finishing(function, seconds: float = 20.0):
    """`function()`'s result or error, failing the test (instead of hanging it) when it takes over `seconds`."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except Exception as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --------------------------------------------------------------------------- N3: LAZ under an address-space limit

READ_UNDER_LIMIT = """
import resource, sys, types
limit = 2_500_000 * 1024  # ulimit -v 2500000, as in the issue
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
package = types.ModuleType("pointclip_hf")  # the readers alone: the package's own import loads torch
package.__path__ = [sys.argv[1] + "/pointclip_hf"]
sys.modules["pointclip_hf"] = package
from pointclip_hf.io import PointCloudFileError, load_point_cloud
try:
    load_point_cloud(sys.argv[2])
except PointCloudFileError as error:
    print(error)
    sys.exit(3)
"""


def layer_bomb(tmp_path: Path) -> Path:
    """A small layered (LAS 1.4) LAZ whose first chunk declares a 4 GiB layer: lazrs would allocate it."""
    raw = bytearray(laz_bytes(object_cloud(n=64)))
    first_layer_size = struct.unpack_from("<I", raw, 96)[0] + 8 + 30 + 4  # chunk table offset, first point, count
    struct.pack_into("<I", raw, first_layer_size, 0xFFFFFF00)
    path = tmp_path / "bomb.laz"
    path.write_bytes(bytes(raw))
    return path


def test_laz_layer_sizes_are_checked_before_lazrs_allocates(tmp_path):
    path = layer_bomb(tmp_path)
    assert path.stat().st_size < 2000
    result = subprocess.run([sys.executable, "-c", READ_UNDER_LIMIT, str(ROOT), str(path)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 3, (result.returncode, result.stderr[-500:])  # -6 (SIGABRT) before
    assert "bomb.laz" in result.stdout and "LAZ chunk 0 declares layers of 4,294,967," in result.stdout


def test_laz_item_list_must_describe_the_point_record(tmp_path):
    raw = bytearray(laz_bytes(object_cloud(n=64), point_format=3, version="1.2"))
    vlr = raw.index(b"laszip encoded") - 2
    item_sizes = vlr + 54 + 34 + 2  # after the VLR header and the record's fixed part: the first item's size
    struct.pack_into("<H", raw, item_sizes, 60000)
    (tmp_path / "items.laz").write_bytes(bytes(raw))
    with pytest.raises(PointCloudFileError, match=r"items\.laz.*LAZ item of type 6 and size 60000"):
        load_point_cloud(tmp_path / "items.laz")


def test_laz_with_variable_size_chunks_reads(tmp_path):
    """Variable-size chunks (as COPC writes them): the chunk walk follows lazrs's own chunk table."""
    lazrs = pytest.importorskip("lazrs")
    xyz = object_cloud(n=1000)
    laz = bytearray(laz_bytes(xyz))
    plain = laz_bytes(xyz, compress=False)
    records = plain[struct.unpack_from("<I", plain, 96)[0] :][: 1000 * 30]
    vlr = laz.index(b"laszip encoded") - 2
    struct.pack_into("<I", laz, vlr + 54 + 12, 0xFFFFFFFF)  # chunk_size: variable
    out = io.BytesIO()
    out.write(bytes(laz[: struct.unpack_from("<I", laz, 96)[0]]))
    compressor = lazrs.LasZipCompressor(out, lazrs.LazVlr(bytes(laz[vlr + 54 : vlr + 54 + 34 + 6])))
    start = 0
    for count in (100, 400, 1, 499):
        compressor.compress_many(records[start * 30 : (start + count) * 30])
        compressor.finish_current_chunk()
        start += count
    compressor.done()
    (tmp_path / "variable.laz").write_bytes(out.getvalue())
    np.testing.assert_allclose(load_point_cloud(tmp_path / "variable.laz")[:, :3], xyz, atol=1e-6)


# --------------------------------------------------------------------------- N4: georeferenced clouds


def write_cloud(path: Path, xyz: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, xyz)
    elif path.suffix == ".xyz":
        np.savetxt(path, xyz, fmt="%.3f")
    elif path.suffix == ".ply":
        from plyfile import PlyData, PlyElement

        vertex = np.empty(len(xyz), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
        vertex["x"], vertex["y"], vertex["z"] = xyz.T
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    else:
        path.write_bytes(laz_bytes(xyz, point_format=3, version="1.2", compress=False, offsets=np.floor(xyz.min(0))))
    return path


@pytest.mark.parametrize("ext", [".npy", ".xyz", ".ply", ".las"])
def test_an_object_at_utm_coordinates_renders_as_at_the_origin(tmp_path, ext):
    near = object_cloud()
    far = load_point_cloud(write_cloud(tmp_path / f"utm{ext}", near + UTM))
    assert far.dtype == np.float64  # float32 keeps 65 distinct x of 5,000 there
    processor = PointCLIPFeatureExtractor(num_points=1024, image_size=32, sampling="first")  # the same points picked
    expected = processor.prepare_points(near.astype(np.float32))
    got = processor.prepare_points(far)  # degenerate before: the reader had cast it to float32
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(processor.render(got).numpy(), processor.render(expected).numpy(), atol=1e-4)


def test_a_200_m_tile_keeps_centimetres(tmp_path):
    steps = np.arange(20_001) * 0.01  # a 200 m line of points 1 cm apart
    tile = UTM + np.stack([steps, steps[::-1], np.zeros_like(steps)], axis=1)
    for ext in (".xyz", ".las"):
        points = load_point_cloud(write_cloud(tmp_path / f"tile{ext}", tile))
        assert len(np.unique(points[:, 1])) == 20_001  # float32 at 4,500,000 m: 0.5 m steps
        np.testing.assert_allclose(points[:, :3], tile, atol=1e-6)
    (tmp_path / "tree" / "tiles").mkdir(parents=True)
    write_cloud(tmp_path / "tree" / "tiles" / "t.xyz", tile)
    from pointclip_hf.data import load_point_cloud_dataset

    stored = load_point_cloud_dataset(tmp_path / "tree").with_format("numpy")[0]["points"]
    assert stored.dtype == np.float32 and len(np.unique(stored[:, 1])) == 20_001  # stored centred
    np.testing.assert_allclose(stored, tile - tile.mean(axis=0), atol=1e-5)


def test_degeneracy_is_judged_at_the_cloud_s_own_precision():
    processor = PointCLIPFeatureExtractor(num_points=64, image_size=32)
    cloud = object_cloud(n=200) + UTM
    assert processor.prepare_points(cloud).shape == (1, 64, 3)
    with pytest.raises(ValueError, match="degenerate"):
        processor.prepare_points(cloud.astype(np.float32))  # float32 keeps 4 distinct y values: truly degenerate
    with pytest.raises(ValueError, match="degenerate"):
        processor.prepare_points(np.full((50, 3), 12345.678))


def test_small_clouds_stay_float32(tmp_path):
    np.savetxt(tmp_path / "a.xyz", object_cloud(n=100) + 10.0, fmt="%.3f")
    assert load_point_cloud(tmp_path / "a.xyz").dtype == np.float32


# --------------------------------------------------------------------------- N15, N16, N7: sizes and things to hang on


def test_ply_element_of_rows_without_properties_is_refused_at_once(tmp_path):
    header = b"ply\nformat binary_little_endian 1.0\nelement junk 134000000\nelement vertex 1\nproperty float x\n" \
             b"property float y\nproperty float z\nend_header\n"  # fmt: skip
    (tmp_path / "junk.ply").write_bytes(header + bytes(12))
    start = time.perf_counter()
    with pytest.raises(PointCloudFileError, match=r"junk\.ply.*truncated.*134,000,012 bytes"):
        load_point_cloud(tmp_path / "junk.ply")
    assert time.perf_counter() - start < 2  # 8 s before


def test_text_files_are_capped_by_size(tmp_path, monkeypatch):
    np.savetxt(tmp_path / "big.xyz", object_cloud(n=500))
    monkeypatch.setenv("POINTCLIP_MAX_CLOUD_BYTES", "1000")
    with pytest.raises(PointCloudFileError, match=r"big\.xyz.*text file of [\d,]+ bytes is over the 1,000-byte cap"):
        load_point_cloud(tmp_path / "big.xyz")
    monkeypatch.setenv("POINTCLIP_MAX_CLOUD_BYTES", str(1 << 20))
    assert load_point_cloud(tmp_path / "big.xyz").shape == (500, 3)


def test_demo_uploads_are_capped(monkeypatch):
    from pointclip_hf import demo

    launched = {}

    class FakeBlocks:
        def launch(self, **kwargs):
            launched.update(kwargs)

    monkeypatch.setattr(demo, "build_demo", lambda models: FakeBlocks())
    monkeypatch.setattr(demo, "DemoModels", lambda *args, **kwargs: None)
    monkeypatch.setenv("POINTCLIP_MAX_CLOUD_BYTES", "5000000")
    demo.launch_demo("some/model")
    assert launched["max_file_size"] == 5_000_000
    demo.launch_demo("some/model", max_file_size=10)
    assert launched["max_file_size"] == 10


def gltf_with_buffer_uri(folder: Path, uri: str) -> Path:
    files = trimesh.creation.box().export(file_type="gltf")
    document = json.loads(files["model.gltf"])
    document["buffers"][0]["uri"] = uri
    (folder / "model.gltf").write_text(json.dumps(document))
    return folder / "model.gltf"


@pytest.mark.parametrize("uri, words", [("fifo", "is not a regular file"), ("../outside.bin", "outside"),
                                        ("/etc/hostname", "outside"), ("missing.bin", "cannot be read")])  # fmt: skip
def test_gltf_buffers_must_be_regular_files_beside_it(tmp_path, uri, words):
    os.mkfifo(tmp_path / "fifo")
    path = gltf_with_buffer_uri(tmp_path, uri)
    with pytest.raises(PointCloudFileError, match=rf"model\.gltf.*{words}"):
        run_finishing(lambda: load_point_cloud(path))  # the FIFO hung the reader before


def test_ply_texture_file_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "texture.png")
    mesh = trimesh.creation.box().export(file_type="ply", encoding="ascii").decode()
    (tmp_path / "box.ply").write_text(mesh.replace("1.0\n", "1.0\ncomment TextureFile texture.png\n", 1))
    assert run_finishing(lambda: load_point_cloud(tmp_path / "box.ply", num_mesh_samples=8)).shape == (8, 3)


def h5_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"modelnet40_{name}"
    folder.mkdir()
    return folder


def test_h5_label_is_checked_before_it_is_read(tmp_path):
    h5py = pytest.importorskip("h5py")
    from pointclip_hf.data import load_point_cloud_dataset

    folder = h5_folder(tmp_path, "labels")
    with h5py.File(folder / "ply_data_train0.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros((2, 16, 3), np.float32))
        handle.create_dataset("label", shape=(2, 450_000_000), dtype="i8", chunks=(1, 1 << 20))  # 7 GB declared
    assert (folder / "ply_data_train0.h5").stat().st_size < 20_000
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.*'label' has shape \(2, 450000000\)"):
        load_point_cloud_dataset(folder)
    assert time.perf_counter() - start < 5


def test_h5_garbage_empty_and_external_files_are_named(tmp_path):
    h5py = pytest.importorskip("h5py")
    from pointclip_hf.data import load_point_cloud_dataset

    garbage = h5_folder(tmp_path, "garbage")
    (garbage / "ply_data_train0.h5").write_bytes(b"not hdf5" * 50)
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.* cannot be read"):
        load_point_cloud_dataset(garbage)
    empty = h5_folder(tmp_path, "empty")
    with h5py.File(empty / "ply_data_train0.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros((0, 2048, 3), np.float32))
        handle.create_dataset("label", data=np.zeros((0, 1), np.int64))
    with pytest.raises(ValueError, match=r"'train' split of the h5 folder .*empty \(0 clouds\)"):
        load_point_cloud_dataset(empty)
    linked = h5_folder(tmp_path, "linked")
    with h5py.File(linked / "ply_data_train0.h5", "w") as handle:
        handle["data"] = h5py.ExternalLink("/dev/zero", "data")
        handle.create_dataset("label", data=np.zeros((1, 1), np.int64))
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.*'data' links to another file"):
        load_point_cloud_dataset(linked)
    external = h5_folder(tmp_path, "external")
    (external / "raw.bin").write_bytes(bytes(2 * 16 * 3 * 4))
    with h5py.File(external / "ply_data_train0.h5", "w") as handle:
        handle.create_dataset("data", shape=(2, 16, 3), dtype="f4", external=[(str(external / "raw.bin"), 0, 384)])
        handle.create_dataset("label", data=np.zeros((2, 1), np.int64))
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5.*'data' keeps its values outside this file"):
        load_point_cloud_dataset(external)


# --------------------------------------------------------------------------- N8 and the still-open files


def test_a_non_utf8_file_name_is_read_with_its_folder(tmp_path, zero_shot_model, tiny_clip_dir, capsys):
    from pointclip_hf.cli import main
    from pointclip_hf.evaluation import classify_files

    folder = tmp_path / "clouds"
    folder.mkdir()
    np.save(folder / "a.npy", object_cloud(n=300).astype(np.float32))
    odd = os.fsdecode(os.fsencode(folder) + b"/caf\xe9.npy")  # Latin-1 name: not valid UTF-8
    Path(odd).write_bytes((folder / "a.npy").read_bytes())
    records = classify_files(zero_shot_model, folder, ["box", "chair"], output_path=tmp_path / "p.jsonl",
                             progress=False)  # fmt: skip
    assert [record["path"] for record in records] == sorted([str(folder / "a.npy"), odd])
    assert main(["classify", str(folder), "--labels", "box,chair", "--model", str(tiny_clip_dir), "-q"]) == 0
    printed = capsys.readouterr().out.splitlines()  # pytest's capture encodes strictly, as a UTF-8 terminal does
    assert [line.split(":")[0] for line in printed] == [str(folder / "a.npy"), str(folder / "caf\ufffd.npy")]


def test_off_cut_in_its_last_face_line(tmp_path):
    text = trimesh.creation.box().export(file_type="off").rstrip()
    (tmp_path / "cut.off").write_text(text[: text.rfind(" ")])
    with pytest.raises(PointCloudFileError, match=r"cut\.off.*OFF face 11 lists 2 of its 3 vertex indices"):
        load_point_cloud(tmp_path / "cut.off")


def test_truncated_binary_stl_says_truncated(tmp_path):
    data = trimesh.creation.box().export(file_type="stl")
    (tmp_path / "cut.stl").write_bytes(data[:-30])
    with pytest.raises(PointCloudFileError, match=r"cut\.stl.*binary STL is truncated: .*12 triangles"):
        load_point_cloud(tmp_path / "cut.stl")


@pytest.mark.parametrize("faces", ["3 0 1 2 255 0 0", "4 0 1 2 3"])
def test_off_polygons_and_face_colours(tmp_path, faces):
    square = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    body = faces if faces.startswith("4") else faces + "\n3 0 2 3 255 0 0"
    (tmp_path / "sq.off").write_text(f"OFF\n4 {1 if faces.startswith('4') else 2} 0\n{square}{body}\n")
    points = load_point_cloud(tmp_path / "sq.off", num_mesh_samples=200)
    assert points.shape == (200, 3) and (points[:, :2] >= 0).all() and (points[:, :2] <= 1).all()
    assert (points[:, 0] > points[:, 1]).any() and (points[:, 0] < points[:, 1]).any()  # both halves sampled


def test_ascii_ply_table_matches_plyfile(tmp_path):
    from plyfile import PlyData, PlyElement

    vertex = np.empty(50, dtype=[("intensity", "f4"), ("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1")])
    for name in vertex.dtype.names:
        vertex[name] = np.random.default_rng(1).uniform(0, 200, 50)
    other = PlyElement.describe(np.zeros(3, dtype=[("w", "f4")]), "camera")
    PlyData([other, PlyElement.describe(vertex, "vertex")], text=True).write(str(tmp_path / "a.ply"))
    points = load_point_cloud(tmp_path / "a.ply")
    expected = np.stack([vertex[name].astype(np.float64) for name in ("x", "y", "z", "intensity", "red")], axis=1)
    np.testing.assert_allclose(points, expected, rtol=1e-6)


def test_reader_table_parse_matches_the_line_parser(tmp_path):
    rows = np.random.default_rng(2).normal(scale=1e3, size=(200, 4))
    (tmp_path / "a.csv").write_text("x,y,z,i\n" + "\n".join(", ".join(f"{v:.9g}" for v in row) for row in rows))
    (tmp_path / "b.txt").write_text("# comment\n\n" + "\n".join("\t".join(f"{v:.9g}" for v in row) for row in rows))
    for name in ("a.csv", "b.txt"):
        np.testing.assert_allclose(load_point_cloud(tmp_path / name), rows, rtol=1e-7)


def test_binary_clouds_come_back_in_memory_not_mapped(tmp_path):
    """The memory-mapped PLY and the in-place PCD reads still hand back an array of their own."""
    from plyfile import PlyData, PlyElement

    xyz = object_cloud(n=100).astype(np.float32)
    vertex = np.empty(100, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "b.ply"))
    header = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 100\nHEIGHT 1\nPOINTS 100\nDATA binary\n"
    (tmp_path / "b.pcd").write_bytes(header.encode() + xyz.tobytes())
    for name in ("b.ply", "b.pcd"):
        points = load_point_cloud(tmp_path / name)
        assert points.flags.owndata and points.flags.writeable and type(points) is np.ndarray
        np.testing.assert_array_equal(points, xyz)


def test_a_pcd_header_names_every_problem_in_one_line(tmp_path):
    (tmp_path / "p.pcd").write_bytes(b"FIELDS x y\nSIZE 4 4\nTYPE F Q\nWIDTH -1\nDATA zipped\n")
    with pytest.raises(PointCloudFileError) as error:
        load_point_cloud(tmp_path / "p.pcd")
    message = str(error.value)
    assert "\n" not in message and "p.pcd" in message
    for problem in ("lacks fields ['z']", "'y' (TYPE Q SIZE 4)", "WIDTH '-1'", "DATA type 'zipped'"):
        assert problem in message


@pytest.mark.parametrize("scale", [float("nan"), float("inf")])
def test_las_with_a_non_finite_scale_is_refused_by_the_coordinate_check(tmp_path, scale):
    data = bytearray(laz_bytes(object_cloud(n=50), point_format=3, version="1.2", compress=False))
    data[131:139] = struct.pack("<d", scale)  # the x scale of the LAS header
    (tmp_path / "s.las").write_bytes(bytes(data))
    with pytest.raises(PointCloudFileError, match=r"s\.las.*NaN or infinite coordinate"):
        load_point_cloud(tmp_path / "s.las")


def test_las_without_points_is_refused(tmp_path):
    (tmp_path / "z.las").write_bytes(laz_bytes(np.zeros((0, 3)), point_format=3, version="1.2", compress=False))
    with pytest.raises(PointCloudFileError, match=r"z\.las.*zero points"):
        load_point_cloud(tmp_path / "z.las")
