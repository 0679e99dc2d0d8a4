"""Tests for pointclip_hf.data: the three sources, the schema, few-shot and validation splits."""

import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Array2D, ClassLabel

from pointclip_hf.data import (
    HUB_DATASETS,
    MODELNET40_CLASSES,
    POINT_FEATURES,
    SCANOBJECTNN_CLASSES,
    class_names_of,
    few_shot_subset,
    load_point_cloud_dataset,
    point_features,
    train_validation_split,
)

h5py = pytest.importorskip("h5py")
datasets.disable_progress_bars()


def cloud(n, seed, channels=3):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, channels)).astype(np.float32)


def assert_schema(ds, names, extra_columns=()):
    assert set(ds.column_names) == {"points", "label", *extra_columns}
    assert isinstance(ds.features["points"], Array2D)
    assert ds.features["points"].shape == (None, 3)
    assert ds.features["points"].dtype == "float32"
    assert isinstance(ds.features["label"], ClassLabel)
    assert ds.features["label"].names == list(names)
    assert class_names_of(ds) == list(names)


# --------------------------------------------------------------------------- fixtures


def write_h5(path, data, label):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=label)


@pytest.fixture
def modelnet_h5(tmp_path):
    """A tiny modelnet40_ply_hdf5_2048 folder: 2 train files (5 + 4 clouds), 1 test file, 3 classes."""
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"ply_data_train0.h5": 5, "ply_data_train1.h5": 4, "ply_data_test0.h5": 3}
    arrays = {}
    for name, n in sizes.items():
        data = rng.uniform(-1, 1, size=(n, 16, 3)).astype(np.float32)
        label = (np.arange(n) % 3).astype(np.uint8)[:, None]  # [N, 1] as in the real files
        write_h5(root / name, data, label)
        arrays[name] = (data, label[:, 0])
    (root / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\ndata/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n"
    )
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    return root, arrays


def write_off(path, offset):
    path.write_text(
        f"OFF\n4 4 0\n{offset} 0 0\n{offset + 1} 0 0\n{offset} 1 0\n{offset} 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
    )


def write_parquet(path, points, labels, points_name="pointcloud", label_name="category"):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({points_name: [np.asarray(p).tolist() for p in points], label_name: labels})
    pq.write_table(table, path)


@pytest.fixture
def hub_folder(tmp_path):
    """A local data set repo as on the Hub: data/{train,test}-*.parquet, `pointcloud` + string `category`."""
    repo = tmp_path / "user__tiny-pointclouds"
    train = [cloud(8, 0), cloud(5, 1, channels=6), cloud(8, 2), cloud(7, 3), cloud(8, 4), cloud(6, 5)]
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", train, ["mug", "cup", "mug", "vase", "cup", "mug"])
    test = [cloud(8, 10), cloud(8, 11)]
    write_parquet(repo / "data" / "test-00000-of-00001.parquet", test, ["vase", "vase"])
    return repo, train


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "hf_cache")


def labelled(labels, names=("a", "b", "c")):
    """An in-memory point data set with the given label ids (each cloud's first coordinate = row index)."""
    points = [np.full((2, 3), i, dtype=np.float32) for i in range(len(labels))]
    return datasets.Dataset.from_dict(
        {"points": points, "label": list(labels)}, features=point_features(list(names)), split="train"
    )


# --------------------------------------------------------------------------- schema


def test_point_features_and_constants():
    assert POINT_FEATURES["points"] == Array2D(shape=(None, 3), dtype="float32")
    assert POINT_FEATURES["label"].names == list(MODELNET40_CLASSES)
    assert len(MODELNET40_CLASSES) == 40 and MODELNET40_CLASSES[15] == "flower_pot"
    assert len(SCANOBJECTNN_CLASSES) == 15 and SCANOBJECTNN_CLASSES[-1] == "toilet"
    assert HUB_DATASETS == {"modelnet40": "jxie/modelnet40", "scanobjectnn": "jxie/scanobjectnn"}
    assert point_features(["x", "y"])["label"].names == ["x", "y"]


# --------------------------------------------------------------------------- source 2: h5 folders


def test_h5_folder_train_and_test(modelnet_h5):
    root, arrays = modelnet_h5
    train = load_point_cloud_dataset(root)
    assert_schema(train, ["airplane", "bathtub", "bed"])
    assert len(train) == 9 and train.split == "train"
    expected = np.concatenate([arrays["ply_data_train0.h5"][0], arrays["ply_data_train1.h5"][0]])
    torch_ds = train.with_format("torch")
    batch = torch_ds[:9]["points"]
    assert batch.dtype == torch.float32 and batch.shape == (9, 16, 3)
    np.testing.assert_array_equal(batch.numpy(), expected)
    assert torch_ds[0]["points"].shape == (16, 3)
    assert train["label"][:6] == [0, 1, 2, 0, 1, 0]
    test = load_point_cloud_dataset(str(root), "test", num_points=10)
    assert len(test) == 3
    np.testing.assert_array_equal(test.with_format("numpy")[:]["points"], arrays["ply_data_test0.h5"][0][:, :10])


def test_h5_glob_without_list_files_and_scanobjectnn_names(tmp_path):
    root = tmp_path / "scanobjectnn" / "main_split"
    root.mkdir(parents=True)
    data = cloud(4 * 12, 0).reshape(4, 12, 3)
    write_h5(root / "training_objectdataset.h5", data, np.array([14, 0, 3, 3]))  # 1-D labels, as ScanObjectNN
    write_h5(root / "test_objectdataset.h5", data[:2], np.array([1, 2]))
    ds = load_point_cloud_dataset(root, "train")
    assert_schema(ds, SCANOBJECTNN_CLASSES)
    assert ds["label"] == [14, 0, 3, 3]
    assert ds.features["label"].int2str(14) == "toilet"
    assert len(load_point_cloud_dataset(root, "test")) == 2
    renamed = load_point_cloud_dataset(root, "test", class_names=[f"c{i}" for i in range(15)])
    assert class_names_of(renamed)[1] == "c1"


def test_h5_extra_channels_dropped(tmp_path):
    root = tmp_path / "modelnet40_normal"
    root.mkdir()
    write_h5(root / "ply_data_train0.h5", cloud(2 * 8, 0, channels=6).reshape(2, 8, 6), np.array([[0], [39]]))
    ds = load_point_cloud_dataset(root)
    assert_schema(ds, MODELNET40_CLASSES)
    assert ds.with_format("numpy")[:]["points"].shape == (2, 8, 3)


def test_h5_errors(modelnet_h5, tmp_path, monkeypatch):
    root, _ = modelnet_h5
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train'\]"):
        load_point_cloud_dataset(root, "validation")
    with pytest.raises(ValueError, match=r"label 2, but only 2 class names"):
        load_point_cloud_dataset(root, class_names=["a", "b"])
    with pytest.raises(TypeError, match="points_column"):
        load_point_cloud_dataset(root, points_column="data")

    # NaN in one cloud: the error names its row index over the whole split (5 clouds in file 0, then row 2).
    bad = tmp_path / "modelnet40_bad"
    bad.mkdir()
    data = cloud(2 * 5 * 4, 0).reshape(2, 5, 4, 3)
    data[1, 2, 1, 0] = np.nan
    write_h5(bad / "ply_data_train0.h5", data[0], np.zeros((5, 1)))
    write_h5(bad / "ply_data_train1.h5", data[1], np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"row 7 of .*NaN"):
        load_point_cloud_dataset(bad)

    unnamed = tmp_path / "mystery"
    unnamed.mkdir()
    write_h5(unnamed / "part_train0.h5", cloud(8, 0).reshape(2, 4, 3), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape_names.txt.*class_names="):
        load_point_cloud_dataset(unnamed)
    assert class_names_of(load_point_cloud_dataset(unnamed, class_names=["p", "q"])) == ["p", "q"]

    missing = tmp_path / "modelnet40_missing"
    missing.mkdir()
    (missing / "train_files.txt").write_text("data/x/ply_data_train9.h5\n")
    with pytest.raises(FileNotFoundError, match="ply_data_train9.h5"):
        load_point_cloud_dataset(missing)

    nolabel = tmp_path / "modelnet40_nolabel"
    nolabel.mkdir()
    with h5py.File(nolabel / "ply_data_train0.h5", "w") as f:
        f.create_dataset("data", data=cloud(8, 0).reshape(2, 4, 3))
    with pytest.raises(ValueError, match=r"needs 'data' and 'label'.*\['data'\]"):
        load_point_cloud_dataset(nolabel)

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pointclip_hf\[h5\]"):
        load_point_cloud_dataset(root)


# --------------------------------------------------------------------------- source 3: class-folder trees


def test_folder_tree_npy_and_off(tmp_path):
    root = tmp_path / "clouds"
    (root / "table").mkdir(parents=True)
    (root / "chair").mkdir()
    np.save(root / "chair" / "c0.npy", cloud(10, 0))
    np.save(root / "chair" / "c1.npy", cloud(7, 1, channels=6))  # ragged N, extra channels
    write_off(root / "table" / "t0.off", 0.0)
    (root / "table" / "notes.md").write_text("ignored")
    (root / "table" / "meta.json").write_text("{}")  # metadata beside clouds: still a class-folder tree
    ds = load_point_cloud_dataset(root)
    assert_schema(ds, ["chair", "table"], extra_columns=["path"])  # sorted
    assert ds["label"] == [0, 0, 1]
    assert list(ds["path"]) == [str(root / name) for name in ("chair/c0.npy", "chair/c1.npy", "table/t0.off")]
    rows = ds.with_format("torch")
    assert rows[0]["points"].shape == (10, 3) and rows[0]["points"].dtype == torch.float32
    assert rows[1]["points"].shape == (7, 3)
    np.testing.assert_allclose(rows[1]["points"].numpy(), cloud(7, 1, channels=6)[:, :3])
    assert rows[2]["points"].shape[1] == 3 and rows[2]["points"].shape[0] > 0  # mesh sampled to points
    mesh_points = rows[2]["points"].numpy()
    assert mesh_points.min() >= -1e-6 and mesh_points.sum(axis=1).max() <= 1 + 1e-5  # on the tetrahedron
    assert isinstance(rows[:3]["points"], list)  # ragged batch -> list of tensors
    small = load_point_cloud_dataset(root, num_points=5)
    assert [len(p) for p in small["points"]] == [5, 5, 5]
    with pytest.warns(UserWarning, match="no split subfolders"):
        assert len(load_point_cloud_dataset(root, "test")) == 3


def test_folder_tree_with_split_folders_keeps_ids_consistent(tmp_path):
    root = tmp_path / "tree"
    for split, klass, n in [("train", "bed", 2), ("train", "sofa", 1), ("train", "lamp", 1), ("test", "sofa", 2)]:
        (root / split / klass).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / klass / f"{i}.npy", cloud(4, i))
    train = load_point_cloud_dataset(root, "train")
    test = load_point_cloud_dataset(root, "test")
    assert class_names_of(train) == class_names_of(test) == ["bed", "lamp", "sofa"]
    assert train["label"] == [0, 0, 1, 2] and test["label"] == [2, 2]
    with pytest.raises(ValueError, match=r"unknown split 'val'.*\['test', 'train'\]"):
        load_point_cloud_dataset(root, "val")


def test_folder_tree_modelnet_zip_layout(tmp_path):
    root = tmp_path / "ModelNet40"
    for klass in ("bowl", "cup"):
        for split in ("train", "test"):
            (root / klass / split).mkdir(parents=True)
            write_off(root / klass / split / f"{klass}_0001.off", 0.0)
    write_off(root / "cup" / "train" / "cup_0002.off", 1.0)
    train = load_point_cloud_dataset(root, "train", num_points=32)
    assert_schema(train, ["bowl", "cup"], extra_columns=["path"])
    assert train["label"] == [0, 1, 1]
    assert train.with_format("torch")[:]["points"].shape == (3, 32, 3)
    assert len(load_point_cloud_dataset(root, "test")) == 2
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_point_cloud_dataset(root, "val")


def test_folder_tree_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "chair").mkdir(parents=True)
    with pytest.raises(ValueError, match="no point-cloud files found"):
        load_point_cloud_dataset(empty)
    root = tmp_path / "tree"
    (root / "chair").mkdir(parents=True)
    np.save(root / "chair" / "0.npy", cloud(4, 0))
    with pytest.raises(ValueError, match=r"class folders \['chair'\].*not in class_names"):
        load_point_cloud_dataset(root, class_names=["table"])
    ds = load_point_cloud_dataset(root, class_names=["table", "chair"])
    assert ds["label"] == [1] and class_names_of(ds) == ["table", "chair"]
    (root / "chair" / "1.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="1.npy"):
        load_point_cloud_dataset(root)


# --------------------------------------------------------------------------- source 1: Hub data sets


def test_hub_folder_maps_columns(hub_folder, cache_dir):
    repo, train_clouds = hub_folder
    train = load_point_cloud_dataset(str(repo), "train", cache_dir=cache_dir)
    assert_schema(train, ["cup", "mug", "vase"])  # sorted strings
    assert train.split == "train"
    assert train["label"] == [1, 0, 1, 2, 0, 1]
    rows = train.with_format("torch")
    for i, expected in enumerate(train_clouds):
        assert rows[i]["points"].dtype == torch.float32
        np.testing.assert_array_equal(rows[i]["points"].numpy(), expected[:, :3])  # 6-channel row keeps xyz
    # test has only 'vase', but ids follow the class list over all splits
    test = load_point_cloud_dataset(repo, "test", cache_dir=cache_dir)
    assert class_names_of(test) == ["cup", "mug", "vase"] and test["label"] == [2, 2]
    short = load_point_cloud_dataset(repo, "train", num_points=3, cache_dir=cache_dir)
    assert short.with_format("torch")[:]["points"].shape == (6, 3, 3)
    slice_ = load_point_cloud_dataset(repo, "train[:2]", cache_dir=cache_dir)
    assert len(slice_) == 2


def test_hub_folder_goes_through_load_dataset(hub_folder, cache_dir, monkeypatch):
    """A local repo folder and a Hub repo id take the same path: datasets.load_dataset(source, split=...)."""
    repo, _ = hub_folder
    calls = []
    real = datasets.load_dataset

    def spy(path, *args, **kwargs):
        calls.append((path, kwargs.get("split")))
        return real(str(repo), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    ds = load_point_cloud_dataset("modelnet40", "train", cache_dir=cache_dir, class_names=["cup", "mug", "vase"])
    assert calls[0] == ("jxie/modelnet40", "train")
    assert len(ds) == 6
    calls.clear()
    load_point_cloud_dataset("someone/some-clouds", "test", cache_dir=cache_dir)
    assert calls[0] == ("someone/some-clouds", "test")
    calls.clear()
    load_point_cloud_dataset(repo, "test", cache_dir=cache_dir)
    assert calls[0] == (str(repo), "test")


def test_hub_short_name_uses_known_class_names(hub_folder, tmp_path, cache_dir, monkeypatch):
    repo = tmp_path / "ints"
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", [cloud(4, 0)] * 3, [0, 39, 7], "inputs", "label")
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda path, *a, **k: real(str(repo), *a, **k))
    ds = load_point_cloud_dataset("modelnet40", cache_dir=cache_dir)
    assert_schema(ds, MODELNET40_CLASSES)
    assert ds["label"] == [0, 39, 7]
    assert class_names_of(load_point_cloud_dataset("jxie/modelnet40", cache_dir=cache_dir)) == list(MODELNET40_CLASSES)


def test_hub_folder_label_kinds_and_overrides(tmp_path, cache_dir):
    # ClassLabel kept from a parquet written by datasets
    repo = tmp_path / "classlabel"
    (repo / "data").mkdir(parents=True)
    src = datasets.Dataset.from_dict(
        {"xyz": [cloud(5, 0).tolist(), cloud(5, 1).tolist()], "target": [1, 0], "extra": ["x", "y"]},
        features=datasets.Features(
            {"xyz": datasets.List(datasets.List(datasets.Value("float64"))),
             "target": ClassLabel(names=["left", "right"]), "extra": datasets.Value("string")}
        ),
    )  # fmt: skip
    src.to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    ds = load_point_cloud_dataset(repo, cache_dir=cache_dir)
    assert_schema(ds, ["left", "right"])
    assert ds["label"] == [1, 0]
    renamed = load_point_cloud_dataset(repo, cache_dir=cache_dir, class_names=["L", "R"])
    assert class_names_of(renamed) == ["L", "R"]
    with pytest.raises(ValueError, match="class_names has 3 names but the ClassLabel column 'target' has 2"):
        load_point_cloud_dataset(repo, cache_dir=cache_dir, class_names=["a", "b", "c"])

    # explicit columns override the candidates; integer labels without names -> "0", "1", ...
    repo2 = tmp_path / "explicit"
    path = repo2 / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.table({"points": [[[9.0, 9.0]]] * 2, "cloud": [cloud(3, 0).tolist(), cloud(3, 1).tolist()],
                  "label": ["z", "z"], "cls": [2, 0]}),
        path,
    )  # fmt: skip
    ds2 = load_point_cloud_dataset(repo2, points_column="cloud", label_column="cls", cache_dir=cache_dir)
    assert_schema(ds2, ["0", "1", "2"])
    assert ds2["label"] == [2, 0]
    np.testing.assert_allclose(ds2.with_format("numpy")[:]["points"][0], cloud(3, 0))
    with_names = load_point_cloud_dataset(
        repo2, points_column="cloud", label_column="label", class_names=["y", "z"], cache_dir=cache_dir
    )
    assert with_names["label"] == [1, 1]
    with pytest.raises(ValueError, match=r"labels not in class_names: \['z'\]"):
        load_point_cloud_dataset(repo2, points_column="cloud", class_names=["y"], cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"label 2, but only 2 class names"):
        load_point_cloud_dataset(
            repo2, points_column="cloud", label_column="cls", class_names=["a", "b"], cache_dir=cache_dir
        )
    with pytest.raises(ValueError, match=r"column 'nope' is not in .*found: \['points', 'cloud', 'label', 'cls'\]"):
        load_point_cloud_dataset(repo2, points_column="nope", cache_dir=cache_dir)


def test_hub_folder_jsonl(tmp_path, cache_dir):
    repo = tmp_path / "jsonl_repo"
    (repo / "data").mkdir(parents=True)
    rows = [{"xyz": cloud(4, i).tolist(), "y": name} for i, name in enumerate(["b", "a", "b"])]
    (repo / "data" / "train.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in rows))
    ds = load_point_cloud_dataset(repo, cache_dir=cache_dir)
    assert_schema(ds, ["a", "b"])
    assert ds["label"] == [1, 0, 1]


def test_save_to_disk_round_trip(modelnet_h5, tmp_path):
    root, _ = modelnet_h5
    ds = load_point_cloud_dataset(root)
    ds.save_to_disk(str(tmp_path / "saved"))
    again = load_point_cloud_dataset(tmp_path / "saved")
    assert_schema(again, class_names_of(ds))
    np.testing.assert_array_equal(again.with_format("numpy")[:]["points"], ds.with_format("numpy")[:]["points"])
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved_dict"))
    assert len(load_point_cloud_dataset(tmp_path / "saved_dict", "train")) == 9
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train'\]"):
        load_point_cloud_dataset(tmp_path / "saved_dict", "test")


def test_hub_errors(tmp_path, cache_dir, hub_folder, monkeypatch):
    repo, _ = hub_folder
    with pytest.raises(ValueError, match="not a known dataset name, Hub repo or folder"):
        load_point_cloud_dataset("definitely-not-a-dataset-xyz")  # offline: the Hub cannot answer
    with pytest.raises(ValueError, match="not a known dataset name, Hub repo or folder"):
        load_point_cloud_dataset(tmp_path / "no" / "such" / "folder")
    with pytest.raises(ValueError, match="not a known dataset name, Hub repo or folder"):
        load_point_cloud_dataset("./missing_folder")
    (tmp_path / "one.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file.*load_point_cloud"):
        load_point_cloud_dataset(tmp_path / "one.npy")
    with pytest.raises(ValueError, match=r"unknown split 'validation'"):
        load_point_cloud_dataset(repo, "validation", cache_dir=cache_dir)

    def make(name, table_columns):
        path = tmp_path / name / "data" / "train-00000-of-00001.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table(table_columns), path)
        return tmp_path / name

    no_points = make("no_points", {"mesh": ["a"], "label": [0]})
    with pytest.raises(ValueError, match=r"no usable points column.*columns found: \['mesh', 'label'\]"):
        load_point_cloud_dataset(no_points, cache_dir=cache_dir)
    no_label = make("no_label", {"points": [[[0.0, 0.0, 0.0]]], "name": ["a"]})
    with pytest.raises(ValueError, match=r"no usable label column.*columns found: \['points', 'name'\]"):
        load_point_cloud_dataset(no_label, cache_dir=cache_dir)
    ragged = make("ragged", {"points": [[[0.0, 0.0, 0.0]], [[0.0, 1.0, 2.0], [1.0, 2.0]]], "label": [0, 0]})
    with pytest.raises(ValueError, match=r"row 1 of points column 'points'.*ragged"):
        load_point_cloud_dataset(ragged, cache_dir=cache_dir)
    flat = make("two_coords", {"points": [[[0.0, 0.0, 0.0]], [[0.0, 1.0]]], "label": [0, 0]})
    with pytest.raises(ValueError, match=r"row 1 of points column 'points'.*shape \(1, 2\)"):
        load_point_cloud_dataset(flat, cache_dir=cache_dir)
    nan = make("nan", {"points": [[[0.0, 0.0, 0.0]]] * 3 + [[[0.0, float("nan"), 0.0]]], "label": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"row 3 of points column 'points'.*NaN"):
        load_point_cloud_dataset(nan, cache_dir=cache_dir)
    inf = make("inf", {"points": [[[0.0, 0.0, float("inf")]]], "label": [0]})
    with pytest.raises(ValueError, match=r"row 0 of .*infinite"):
        load_point_cloud_dataset(inf, cache_dir=cache_dir)
    # datasets itself refuses 0-row parquet files and "train[:0]", so stand in for a repo with an empty split
    empty = datasets.Dataset.from_dict({"points": [], "label": []}, split="train")
    with monkeypatch.context() as patch:
        patch.setattr(datasets, "load_dataset", lambda *args, **kwargs: empty)
        with pytest.raises(ValueError, match=r"split 'train' of dataset 'someone/empty' is empty \(0 rows\)"):
            load_point_cloud_dataset("someone/empty")
    floats = make("float_labels", {"points": [[[0.0, 0.0, 0.0]]], "label": [0.5]})
    with pytest.raises(ValueError, match="expected a ClassLabel, integers or strings"):
        load_point_cloud_dataset(floats, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="num_points must be positive"):
        load_point_cloud_dataset(repo, num_points=0)
    with pytest.raises(ValueError, match="duplicates"):
        load_point_cloud_dataset(repo, class_names=["a", "a"])


# --------------------------------------------------------------------------- few-shot subsets


def test_few_shot_subset_exact_and_deterministic():
    ds = labelled([0, 1, 2] * 6 + [0, 0])  # a: 8, b: 6, c: 6
    few = few_shot_subset(ds, shots=4, seed=3)
    assert len(few) == 12
    assert np.bincount(few["label"]).tolist() == [4, 4, 4]
    assert few.features == ds.features and class_names_of(few) == ["a", "b", "c"]
    rows = [int(p[0][0]) for p in few["points"]]
    assert rows == sorted(rows) and len(set(rows)) == 12  # dataset order, no repeats
    assert all(ds["label"][r] == lab for r, lab in zip(rows, few["label"]))
    again = few_shot_subset(ds, shots=4, seed=3)
    assert [int(p[0][0]) for p in again["points"]] == rows
    other = [int(p[0][0]) for p in few_shot_subset(ds, shots=4, seed=4)["points"]]
    assert other != rows
    # the documented idiom from hf_conventions.md section 5
    lab = np.asarray(ds["label"])
    g = np.random.default_rng(3)
    idx = np.concatenate([g.permutation(np.flatnonzero(lab == c))[:4] for c in np.unique(lab)])
    assert rows == np.sort(idx).tolist()
    assert few_shot_subset(ds, shots=6).with_format("torch")[:]["points"].shape == (18, 2, 3)


def test_few_shot_subset_errors_and_replacement():
    ds = labelled([0, 0, 0, 1, 1, 2, 2, 2])  # b has 2
    with pytest.raises(ValueError, match=r"'b' \(label 1\) has 2.*replace=True"):
        few_shot_subset(ds, shots=3)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="shots must be a positive"):
            few_shot_subset(ds, shots=bad)
    with pytest.raises(TypeError):
        few_shot_subset(ds, shots=2.5)
    few = few_shot_subset(ds, shots=3, seed=1, replace=True)
    assert np.bincount(few["label"]).tolist() == [3, 3, 3]
    rows = [int(p[0][0]) for p in few["points"]]
    assert rows == sorted(rows)
    b_rows = [r for r, lab in zip(rows, few["label"]) if lab == 1]
    assert set(b_rows) <= {3, 4} and len(b_rows) == 3  # sampled with replacement
    assert len({r for r, lab in zip(rows, few["label"]) if lab != 1}) == 6  # others without
    assert few_shot_subset(ds, shots=3, seed=1, replace=True)["label"] == few["label"]
    absent = labelled([0, 0, 1, 1])  # class 'c' has no example at all
    with pytest.raises(ValueError, match=r"'c' \(label 2\) has 0"):
        few_shot_subset(absent, shots=1, replace=True)


# --------------------------------------------------------------------------- validation split


def test_train_validation_split_fraction_is_stratified():
    ds = labelled([0] * 10 + [1] * 5 + [2] * 1)
    train, val = train_validation_split(ds, 0.2, seed=0)
    assert np.bincount(val["label"], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(train["label"], minlength=3).tolist() == [8, 4, 1]
    train_rows = [int(p[0][0]) for p in train["points"]]
    val_rows = [int(p[0][0]) for p in val["points"]]
    assert not set(train_rows) & set(val_rows)
    assert sorted(train_rows + val_rows) == list(range(16))
    assert train_rows == sorted(train_rows) and val_rows == sorted(val_rows)
    assert train.features == val.features == ds.features
    again = train_validation_split(ds, 0.2, seed=0)[1]
    assert [int(p[0][0]) for p in again["points"]] == val_rows


def test_train_validation_split_count_and_errors():
    ds = labelled([0] * 4 + [1] * 3 + [2] * 3)
    train, val = train_validation_split(ds, 2, seed=1)
    assert np.bincount(val["label"]).tolist() == [2, 2, 2]
    assert np.bincount(train["label"]).tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match=r"'b' \(label 1\) has 3"):
        train_validation_split(ds, 3)
    for bad in (0.0, 1.0, -0.5, 0):
        with pytest.raises(ValueError):
            train_validation_split(ds, bad)
    with pytest.raises(TypeError):
        train_validation_split(ds, True)
    test_split = datasets.Dataset.from_dict(ds.to_dict(), features=ds.features, split="test")
    with pytest.warns(UserWarning, match="training split"):
        train_validation_split(test_split, 0.5)


def test_class_names_of_errors():
    with pytest.raises(ValueError, match="no 'label' column"):
        class_names_of(datasets.Dataset.from_dict({"x": [1]}))
    with pytest.raises(ValueError, match="not a ClassLabel"):
        class_names_of(datasets.Dataset.from_dict({"label": [1]}))


def test_inputs_refused_by_a_shared_check(modelnet_h5, tmp_path, cache_dir):
    root, _ = modelnet_h5
    (root / "val_files.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"'val' split of the h5 folder .*empty \(0 clouds\)"):
        load_point_cloud_dataset(root, "val")
    load_point_cloud_dataset(root).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(TypeError, match=r"cache_dir do not apply to .*saved.*save_to_disk folder"):
        load_point_cloud_dataset(tmp_path / "saved", cache_dir=cache_dir)
    repo = tmp_path / "none_label"
    write_parquet(repo / "data" / "train-00000-of-00001.parquet", [cloud(8, 0), cloud(8, 1)], ["mug", None])
    with pytest.raises(ValueError, match=r"row 1 of label column 'category' has label None"):
        load_point_cloud_dataset(repo, cache_dir=cache_dir)
