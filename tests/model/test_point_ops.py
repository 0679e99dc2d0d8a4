"""Which points the model sees and which way is up, on shapes people made or scanned (`testing_utils`): the
default sampling does not depend on the order a file stores its points in, and `up_axis` (or a file format's own
convention) turns z-up and other clouds y up, exactly."""

import json

import numpy as np
import pytest
import torch

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, load_point_cloud
from pointclip_hf.cli import main as cli_main
from pointclip_hf.evaluation.fingerprint import run_fingerprint
from pointclip_hf.model.feature_extraction_pointclip import UP_AXES, hash_order, sample_indices, turn_y_up
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.testing_utils import motorcycle_scan, pyvista_mesh_path, sorted_along

LABELS = ["motorcycle", "airplane", "chair", "lamp"]
# Sorted and shuffled, the same cloud is centred on a mean summed in another order: float32 rounding of the
# normalised coordinates, which moves the logits by about 1e-4 (the scores by 0.01%); a relative tolerance, since the
# tiny CLIP's scores saturate. Another sample of the cloud moves the logits by about 1.
SCORE_TOLERANCE = 1e-3
UTM_OFFSET = np.array([500_000.0, 4_100_000.0, 50.0])  # easting, northing, height
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float32)  # (x, y, z) @ it = (x, z, -y), exactly
MILLIMETRE = 1e-3


@pytest.fixture(scope="module")
def scan():
    """The Motorcycle scan (up is -y), stored sorted by height as scan lines and LAS tiles often are."""
    pytest.importorskip("skimage", reason="scikit-image (the test extra) ships the Motorcycle stereo pair")
    return sorted_along(motorcycle_scan(), column=1)


@pytest.fixture(scope="module")
def airplane():
    """pyvista's airplane, a real z-up mesh file."""
    try:
        return pyvista_mesh_path("airplane")
    except ImportError:
        pytest.skip("pyvista (the test extra) ships the airplane mesh")


def _shuffled(points: np.ndarray) -> np.ndarray:
    return points[np.random.default_rng(0).permutation(len(points))]


def _z_up(y_up: np.ndarray) -> np.ndarray:
    """A y-up cloud stored z up: the inverse of `Z_UP_TO_Y_UP`, exact."""
    return y_up @ Z_UP_TO_Y_UP.T


def _nearest_distances(points: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """For each of `points`, the distance to the nearest point of `cloud` (in float64: cdist's matrix-product form
    loses about 1e-4 to cancellation in float32)."""
    cloud = cloud.double()
    return torch.cat([torch.cdist(chunk, cloud).amin(dim=1) for chunk in points.double().split(4096)])


def _y_up_metres(scan: np.ndarray) -> np.ndarray:
    """The scan (camera frame, millimetres, up is -y) turned y up, in metres, float64."""
    return scan.astype(np.float64) * MILLIMETRE * np.array([1.0, -1.0, -1.0])


def test_the_default_sample_of_a_sorted_scan_does_not_depend_on_the_order(scan):
    shuffled = _shuffled(scan)
    unnormalized = PointCLIPFeatureExtractor(normalize=False)
    assert torch.equal(unnormalized.prepare_points(scan), unnormalized.prepare_points(shuffled))
    default_sample = PointCLIPFeatureExtractor().prepare_points(scan)[0]
    torch.testing.assert_close(
        default_sample, PointCLIPFeatureExtractor().prepare_points(shuffled)[0], rtol=0, atol=1e-6
    )
    assert not torch.equal(default_sample, PointCLIPFeatureExtractor(seed=1).prepare_points(scan)[0])

    whole = PointCLIPFeatureExtractor(sampling="first", num_points=len(scan)).prepare_points(scan)[0]
    first = PointCLIPFeatureExtractor(sampling="first").prepare_points(scan)[0]
    spread, first_spread = (float(_nearest_distances(whole, sample).mean()) for sample in (default_sample, first))
    assert first_spread > 10 * spread, "the first stored points are a slice of the scan; the default sample is not"


def test_a_sorted_scan_classifies_as_the_shuffled_one(scan, zero_shot_model):
    sorted_scores = zero_shot_model.classify(scan, LABELS)
    again = zero_shot_model.classify(scan, LABELS)
    shuffled_scores = zero_shot_model.classify(_shuffled(scan), LABELS)
    assert sorted_scores == again, "the same cloud in the same order gives the same bits"
    assert sorted_scores[0]["label"] == shuffled_scores[0]["label"]
    as_dict = {prediction["label"]: prediction["score"] for prediction in shuffled_scores}
    assert {p["label"]: p["score"] for p in sorted_scores} == pytest.approx(as_dict, rel=SCORE_TOLERANCE)


def test_equal_hashes_are_ordered_by_the_coordinates(monkeypatch):
    constant_hash = lambda points, seed: torch.zeros(points.shape[:2]).long()  # noqa: E731
    monkeypatch.setattr("pointclip_hf.model.feature_extraction_pointclip.point_hash", constant_hash)
    points = torch.tensor([[2.0, 0, 0], [1, 5, 0], [1, 2, 9], [1, 2, 3], [0, 9, 9], [1, 2, 3]])
    expected = torch.tensor([[0.0, 9, 9], [1, 2, 3], [1, 2, 3], [1, 2, 9]])
    for order in (torch.arange(6), torch.tensor([5, 4, 3, 2, 1, 0]), torch.tensor([2, 0, 5, 1, 3, 4])):
        cloud = points[order][None]
        assert torch.equal(cloud[0, hash_order(cloud, 4, seed=0)[0]], expected)


@pytest.mark.parametrize("up_axis", UP_AXES)
def test_each_up_axis_is_turned_to_y_by_a_rotation(up_axis):
    axis, sign = "xyz".index(up_axis[-1]), -1.0 if up_axis.startswith("-") else 1.0
    basis = torch.eye(3, dtype=torch.float64)
    turned = turn_y_up(basis, up_axis)
    assert torch.equal(turned[axis] * sign, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert float(torch.linalg.det(turned)) == 1.0, "a rotation, not a mirror image"
    cloud = torch.randn(50, 3)
    assert turn_y_up(cloud, "y") is cloud


def test_a_z_up_mesh_file_renders_as_its_y_up_version(airplane, tmp_path):
    stored = load_point_cloud(airplane)  # as the processor reads it: 2048 points drawn from the surface
    y_up = stored @ Z_UP_TO_Y_UP
    z_up = PointCLIPFeatureExtractor(up_axis="z").prepare_points(str(airplane))
    assert torch.equal(z_up, PointCLIPFeatureExtractor().prepare_points(y_up))
    assert _thinnest_axis(z_up) == 1, "the airplane's height, its thinnest extent, ends up along y"
    assert _thinnest_axis(PointCLIPFeatureExtractor().prepare_points(stored)) != 1

    np.save(tmp_path / "airplane_y_up.npy", y_up)
    common = ["render", "--projection", "pointclip_v2", "--out"]
    assert cli_main([*common, str(tmp_path / "z.png"), str(airplane), "--up-axis", "z"]) == 0
    assert cli_main([*common, str(tmp_path / "y.png"), str(tmp_path / "airplane_y_up.npy")]) == 0
    assert (tmp_path / "z.png").read_bytes() == (tmp_path / "y.png").read_bytes()


def _thinnest_axis(points: torch.Tensor) -> int:
    return int((points[0].amax(dim=0) - points[0].amin(dim=0)).argmin())


def _write_las(path, points_m: np.ndarray, offset) -> None:
    laspy = pytest.importorskip("laspy", reason="laspy (the las and test extras)")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [MILLIMETRE] * 3, np.asarray(offset, dtype=np.float64)
    las = laspy.LasData(header)
    las.x, las.y, las.z = (points_m.astype(np.float64) + header.offsets).T
    las.write(str(path))


def test_a_las_file_is_read_z_up_by_its_format(scan, tmp_path):
    _write_las(tmp_path / "scan.las", _z_up(_y_up_metres(scan)), offset=(0.0, 0.0, 0.0))
    stored = load_point_cloud(tmp_path / "scan.las")[:, :3]
    by_format = PointCLIPFeatureExtractor().prepare_points(str(tmp_path / "scan.las"))
    assert torch.equal(by_format, PointCLIPFeatureExtractor().prepare_points(stored @ Z_UP_TO_Y_UP))
    assert torch.equal(by_format, PointCLIPFeatureExtractor(up_axis="z").prepare_points(stored))
    assert not torch.equal(by_format, PointCLIPFeatureExtractor(up_axis="y").prepare_points(str(tmp_path / "scan.las")))


def test_a_gltf_file_keeps_y_up_by_its_format(airplane, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load_mesh(str(airplane), process=False)
    mesh.vertices = np.asarray(mesh.vertices) @ Z_UP_TO_Y_UP
    mesh.export(tmp_path / "airplane.glb")
    assert _thinnest_axis(PointCLIPFeatureExtractor().prepare_points(str(tmp_path / "airplane.glb"))) == 1


def test_utm_coordinates_are_sampled_as_near_the_origin_without_blur(scan, tmp_path):
    y_up = torch.from_numpy(_y_up_metres(scan))
    utm = torch.from_numpy(_z_up(y_up.numpy()) + UTM_OFFSET)
    picked = set(sample_indices(turn_y_up(utm, "z")[None], 1024, "random")[0].tolist())
    picked_near_the_origin = set(sample_indices(y_up[None], 1024, "random")[0].tolist())
    assert len(picked & picked_near_the_origin) > 0.95 * 1024, "hashed from its bounding box, not from 4,100,000 m"

    whole = PointCLIPFeatureExtractor(sampling="first", num_points=len(y_up)).prepare_points(y_up)[0]
    prepared = PointCLIPFeatureExtractor(up_axis="z").prepare_points(utm)[0]
    assert float(_nearest_distances(prepared, whole).max()) < 1e-5, "the points are where they are, unblurred"

    _write_las(tmp_path / "tile.las", _z_up(y_up.numpy()), offset=UTM_OFFSET)
    assert load_point_cloud(tmp_path / "tile.las").dtype == np.float64, "float32 would put UTM points 0.25 m apart"
    from_file = PointCLIPFeatureExtractor().prepare_points(str(tmp_path / "tile.las"))[0]
    radius = float((y_up - y_up.mean(dim=0)).norm(dim=1).max())
    rounding = 2 * MILLIMETRE / radius  # the file rounds each point to 1 mm, and the farthest one sets the scale
    assert float(_nearest_distances(from_file, whole).max()) < rounding


def test_point_options_reach_the_processor_from_pretrained(tiny_clip_dir, tmp_path):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, sampling="fps", up_axis="z")
    extractor = model.processor.feature_extractor
    assert (extractor.sampling, extractor.up_axis) == ("fps", "z")
    assert PointCLIPModel.from_pretrained(tiny_clip_dir).processor.feature_extractor.sampling == "random"
    assert run_fingerprint(model, model.processor, [], 0, {})["processor"]["up_axis"] == "z", "a resumed run checks it"
    with pytest.raises(ValueError, match="up axis 'up'"):
        PointCLIPModel.from_pretrained(tiny_clip_dir, up_axis="up")

    saved = PointCLIPModel.from_pretrained(tiny_clip_dir)
    saved.save_pretrained(tmp_path)
    processor = processor_for_model(saved)
    processor.feature_extractor.sampling = "first"  # as every folder saved before "random" became the default
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["feature_extractor"]["sampling"] == "first"
    assert PointCLIPModel.from_pretrained(tmp_path).processor.feature_extractor.sampling == "first"
    reloaded = PointCLIPModel.from_pretrained(tmp_path, sampling="random", up_axis="-y").processor.feature_extractor
    assert (reloaded.sampling, reloaded.up_axis) == ("random", "-y")


def test_the_commands_take_sampling_and_up_axis(scan, tiny_clip_dir, tmp_path, capsys):
    np.save(tmp_path / "sorted.npy", scan)
    np.save(tmp_path / "shuffled.npy", _shuffled(scan))
    labels = ",".join(LABELS)
    runs = {}
    for name, options in {"sorted": [], "shuffled": [], "first": ["--sampling", "first"]}.items():
        path = tmp_path / ("shuffled.npy" if name == "shuffled" else "sorted.npy")
        assert cli_main(["classify", str(path), "--model", str(tiny_clip_dir), "--labels", labels, "--json",
                         "--up-axis=-y", "--dtype", "float32", *options]) == 0  # fmt: skip
        runs[name] = {p["label"]: p["score"] for p in json.loads(capsys.readouterr().out)[0]["predictions"]}
    assert runs["sorted"] == pytest.approx(runs["shuffled"], rel=SCORE_TOLERANCE)
    assert runs["sorted"] != pytest.approx(runs["first"], rel=SCORE_TOLERANCE)
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, up_axis="-y")
    expected = model.classify(str(tmp_path / "sorted.npy"), LABELS)
    assert runs["sorted"] == {p["label"]: p["score"] for p in expected}


@pytest.mark.parametrize("command, options", [
    *[(name, ["--sampling", "--up-axis"]) for name in
      ("classify", "evaluate", "train", "search", "ensemble", "index", "render", "demo")],
    ("segment", ["--up-axis"]),
    ("retrieve", ["--up-axis"]),
])  # fmt: skip
def test_every_command_that_reads_clouds_offers_the_options(command, options, capsys):
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in options)
