"""Part segmentation tooling: shape IoU, the ShapeNetPart h5 loader, presets, prompt libraries, the `segment` and
`evaluate-parts` commands and saving the model."""

import json

import h5py
import numpy as np
import pytest
from conftest import hub_environment
from PIL import Image
from test_modeling_pointclip_part_segmentation import _box_on_legs, chair_like, golden, seg_clip_dir, seg_model  # noqa: F401 (fixtures)

from pointclip_hf import PointCLIPForZeroShotPartSegmentation
from pointclip_hf.cli import main
from pointclip_hf.part_segmentation.data import load_shapenet_part
from pointclip_hf.part_segmentation.iou import PartIoUReport, shape_iou
from pointclip_hf.part_segmentation.presets import REFERENCE_VIEW_WEIGHTS, SHAPENET_PART_CATEGORIES, part_preset
from pointclip_hf.part_segmentation.prompts import load_part_prompts
from pointclip_hf.testing_utils import run_without_the_package

# Shape IoU, by hand.


def test_shape_iou_hand_computed():
    truth = np.array([0, 0, 1, 1])
    assert shape_iou(np.array([0, 0, 1, 1]), truth, [0, 1]) == 1.0
    # part 0: I 1, U 2 -> 0.5; part 1: I 2, U 3 -> 2/3
    assert shape_iou(np.array([0, 1, 1, 1]), truth, [0, 1]) == pytest.approx((0.5 + 2 / 3) / 2)
    # a part absent from prediction and truth counts 1; one only predicted counts 0
    assert shape_iou(np.array([0, 0, 1, 1]), truth, [0, 1, 2]) == pytest.approx(1.0)
    assert shape_iou(np.array([0, 0, 1, 2]), truth, [0, 1, 2]) == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="same 1-D shape"):
        shape_iou(np.zeros(3), np.zeros(4), [0])


def test_instance_and_category_miou():
    report = PartIoUReport.from_shapes([1.0, 0.5, 0.0], ["chair", "chair", "table"])
    assert report.instance_miou == pytest.approx(0.5)
    assert report.category_ious == {"chair": 0.75, "table": 0.0}
    assert report.category_miou == pytest.approx(0.375)


# Presets and the ShapeNetPart loader.


def test_presets_cover_the_50_parts():
    presets = [part_preset(name) for name in SHAPENET_PART_CATEGORIES]
    assert [p.first_part_id for p in presets][:5] == [0, 4, 6, 8, 12]
    assert presets[-1].first_part_id + len(presets[-1].parts) == 50
    assert part_preset("table").first_part_id == 47
    assert all(len(weights) == 10 for weights in REFERENCE_VIEW_WEIGHTS.values())
    with pytest.raises(ValueError, match="Unknown ShapeNetPart category"):
        part_preset("sofa")


@pytest.fixture(scope="module")
def shapenet_folder(tmp_path_factory):
    """Two tiny h5 test files: a "table" (box on legs, pids 47/48) and an "airplane"-labelled copy (pids 0/1)."""
    root = tmp_path_factory.mktemp("shapenet_part") / "hdf5_data"
    root.mkdir()
    points, labels = _box_on_legs(num_points=512)
    for index, (category, first) in enumerate([(15, 47), (0, 0)]):
        with h5py.File(root / f"ply_data_test{index}.h5", "w") as handle:
            handle["data"] = points.numpy()
            handle["label"] = np.array([[category]], dtype=np.uint8)
            handle["pid"] = (labels.numpy() + first)[None].astype(np.uint8)
    with h5py.File(root / "ply_data_train0.h5", "w") as handle:
        handle["data"] = points.numpy()
        handle["label"] = np.array([[15]])
    return root.parent


def test_load_shapenet_part(shapenet_folder):
    dataset = load_shapenet_part(shapenet_folder, "test")
    assert len(dataset) == 2
    assert dataset.features["category"].names[15] == "table"
    row = dataset.with_format("numpy")[0]
    assert row["points"].shape == (512, 3) and row["category"] == 15 and set(row["part_ids"]) == {47, 48}
    assert len(load_shapenet_part(shapenet_folder, "test", categories=["table"], num_points=100)) == 1
    with pytest.raises(ValueError, match="lacks the datasets"):
        load_shapenet_part(shapenet_folder, "train")
    with pytest.raises(ValueError, match="Unknown ShapeNetPart category 'sofa'"):
        load_shapenet_part(shapenet_folder, "test", categories=["sofa"])
    with pytest.raises(OSError, match="No \\*val\\*.h5"):
        load_shapenet_part(shapenet_folder, "val")


def test_part_prompt_libraries(tmp_path):
    nested = tmp_path / "library.json"
    nested.write_text(json.dumps({"chair": {"back": ["a chair back."]}, "table": {"leg": ["a table leg."]}}))
    assert load_part_prompts(nested, "chair") == {"back": ["a chair back."]}
    with pytest.raises(ValueError, match="not for 'lamp'"):
        load_part_prompts(nested, "lamp")
    flat = tmp_path / "prompts.json"
    flat.write_text(json.dumps({"back": []}))
    with pytest.raises(ValueError, match="non-empty list"):
        load_part_prompts(tmp_path)


# The commands.


def test_segment_command_writes_ply_and_views(seg_clip_dir, tmp_path, capsys):  # noqa: F811
    cloud = tmp_path / "table.npy"
    np.save(cloud, _box_on_legs(num_points=400)[0][0].numpy())
    ply, png = tmp_path / "parts.ply", tmp_path / "parts.png"
    assert main(["segment", str(cloud), "--object", "table", "--parts", "top,leg", "--out", str(ply),
                 "--views", str(png), "--model", str(seg_clip_dir)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "0 top 31 119 180" in out and "1 leg 255 127 14" in out
    header, body = ply.read_text().split("end_header\n")
    assert "comment part 0 top 31 119 180" in header and "element vertex 400" in header
    rows = np.array([line.split() for line in body.strip().splitlines()], dtype=float)
    assert rows.shape == (400, 7)
    assert np.allclose(rows[:, :3], np.load(cloud), atol=1e-5)
    assert set(rows[:, 6].astype(int)) <= {0, 1}
    image = Image.open(png)
    assert image.mode == "RGB" and image.width > 5 * 224


def test_segment_command_bad_input_exits_2(seg_clip_dir, tmp_path, capsys):  # noqa: F811
    cloud = tmp_path / "table.npy"
    np.save(cloud, _box_on_legs(num_points=64)[0][0].numpy())
    common = ["--out", str(tmp_path / "x.ply"), "--model", str(seg_clip_dir)]
    assert main(["segment", str(cloud), "--parts", "leg", *common]) == 2
    assert "at least 2 parts" in capsys.readouterr().err
    assert main(["segment", str(cloud), "--parts", "leg,leg", *common]) == 2
    assert "duplicates" in capsys.readouterr().err
    assert main(["segment", str(cloud), "--object", "spaceship", *common]) == 2
    assert "--parts is required" in capsys.readouterr().err


def test_evaluate_parts_command(seg_clip_dir, shapenet_folder, tmp_path, capsys):  # noqa: F811
    output = tmp_path / "report.json"
    command = ["evaluate-parts", "--dataset", str(shapenet_folder), "--model", str(seg_clip_dir), "--output"]
    assert main([*command, str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["num_shapes"] == 2
    assert set(report["category_ious"]) == {"table", "airplane"}
    assert 0 <= report["instance_miou"] <= 1
    captured = capsys.readouterr()
    assert "instance mIoU" in captured.out and "segmenting" in captured.err
    assert main([*command, str(tmp_path / "quiet.json"), "--limit", "1", "-q"]) == 0
    assert "segmenting" not in capsys.readouterr().err
    assert main(["evaluate-parts", "--dataset", str(shapenet_folder), "--model", str(seg_clip_dir),
                 "--official-lookup", "--scrambled-patch-tokens"]) == 0  # fmt: skip


def test_search_parts_command(seg_clip_dir, shapenet_folder, tmp_path, capsys):  # noqa: F811
    prompts, output = tmp_path / "prompts.json", tmp_path / "search.json"
    prompts.write_text(json.dumps({"desktop": ["the flat top of a table."], "leg or support": ["a thin table leg."]}))
    command = ["search-parts", "--dataset", str(shapenet_folder), "--split", "test", "--category", "table", "--grid",
               "0,1", "--model", str(seg_clip_dir), "--part-prompts"]  # fmt: skip
    assert main([*command, str(prompts), "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["shapes"] == 1 and len(result["view_weights"]) == 10
    assert result["view_weights"] == [1.0] * 10 or (
        result["view_weights"][:4] == [0.75] * 4 and set(result["view_weights"][4:]) <= {0.0, 1.0}
    )
    assert 0 <= result["baseline_miou"] <= result["miou"] <= 1
    assert set(result["part_prompts"]) <= {"desktop", "leg or support"}
    assert "--view-weights" in capsys.readouterr().out
    prompts.write_text(json.dumps({"seat": ["the seat of a chair."]}))
    assert main(command + [str(prompts)]) == 2
    assert "not parts of table" in capsys.readouterr().err


# Saving.


def test_save_and_reload(seg_model, tmp_path):  # noqa: F811
    seg_model.config.view_weights = [0.5] * 10
    seg_model.save_pretrained(tmp_path / "saved")
    seg_model.config.view_weights = None
    reloaded = PointCLIPForZeroShotPartSegmentation.from_pretrained(tmp_path / "saved")
    assert reloaded.config.projection_style == "pointclip_v2_part_segmentation"
    assert reloaded.config.view_weights == [0.5] * 10
    for name, tensor in seg_model.clip.state_dict().items():
        assert (reloaded.clip.state_dict()[name] == tensor).all(), name


# Searches on a planted validation set.


@pytest.fixture(scope="module")
def planted_cache():
    import torch

    from pointclip_hf import render_part_views
    from pointclip_hf.part_segmentation.search import PartViewCache

    points, labels = _box_on_legs()
    views = render_part_views(points)
    rows = torch.arange(14).repeat_interleave(14)
    text = torch.eye(2, 8)
    patches = torch.where((rows < 7)[:, None], text[0], text[1]).expand(10, -1, -1)
    cache = PartViewCache([patches], [views.pixels[0]], [views.visible[0]], [labels.numpy()], 224, 100.0)
    return cache, text


def test_part_view_weight_search_finds_the_side_views(planted_cache):
    from pointclip_hf.part_segmentation.search import search_part_view_weights

    cache, text = planted_cache
    result = search_part_view_weights(cache, text, grid=(0.0, 1.0), fixed={0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})
    assert result.baseline_miou < 1.0
    assert result.miou == 1.0
    assert result.view_weights[:4] == [0.0] * 4


def test_part_search_cache_of_scrambled_tokens(seg_model):  # noqa: F811
    import torch

    from pointclip_hf.model.modeling_pointclip_part_segmentation import scramble_patch_tokens
    from pointclip_hf.part_segmentation.search import encode_part_views

    points, labels = _box_on_legs(num_points=256)
    clouds, part_labels = [points[0].numpy()], [labels.numpy()]
    correct = encode_part_views(seg_model, clouds, part_labels)
    scrambled = encode_part_views(seg_model, clouds, part_labels, scrambled_patch_tokens=True)
    assert torch.equal(scrambled.patch_features[0], scramble_patch_tokens(correct.patch_features[0]))
    assert not torch.equal(scrambled.patch_features[0], correct.patch_features[0])


def test_part_prompt_search_picks_the_right_sentence(planted_cache):
    import torch

    from pointclip_hf.part_segmentation.search import search_part_prompts

    cache, text = planted_cache
    wrong = torch.nn.functional.normalize(text[1] + 0.1 * text[0], dim=0)
    candidates = [torch.stack([wrong, text[0]]), text[1:]]
    result = search_part_prompts(cache, candidates, view_weights=[0.0] * 4 + [1.0] * 4 + [0.0] * 2)
    assert result.baseline_miou < 0.9
    assert result.choices == [1, 0]
    assert result.miou == 1.0
    assert torch.equal(result.text_embeds, text)


def test_saved_folder_holds_only_config_and_code(seg_model, tmp_path):  # noqa: F811
    seg_model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["projection_style"] == "pointclip_v2_part_segmentation"
    assert config["auto_map"]["AutoModel"].endswith("PointCLIPForZeroShotPartSegmentation")
    assert "point-cloud-zero-shot-part-segmentation" in config["custom_pipelines"]
    assert (tmp_path / "saved" / "modeling_pointclip_part_segmentation.py").exists()
    weights = tmp_path / "saved" / "model.safetensors"
    assert not weights.exists() or weights.stat().st_size < 1024


def test_auto_model_loads_saved_folders_new_and_old(seg_model, tmp_path):  # noqa: F811
    from transformers import AutoModel

    from pointclip_hf import PointCLIPModel, PointCLIPPartSegmentationConfig

    seg_model.save_pretrained(tmp_path / "saved")
    config_file = tmp_path / "saved" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["model_type"] == "pointclip_part_segmentation"
    assert isinstance(AutoModel.from_pretrained(tmp_path / "saved"), PointCLIPForZeroShotPartSegmentation)
    with pytest.raises(ValueError, match="holds a 'pointclip_part_segmentation' model"):
        PointCLIPModel.from_pretrained(tmp_path / "saved")
    config["model_type"] = "pointclip"  # as saved before part segmentation had its own model_type
    del config["auto_map"]
    config_file.write_text(json.dumps(config))
    for loader in (AutoModel, PointCLIPForZeroShotPartSegmentation):
        old = loader.from_pretrained(tmp_path / "saved")
        assert isinstance(old, PointCLIPForZeroShotPartSegmentation)
        assert isinstance(old.config, PointCLIPPartSegmentationConfig)


def test_push_and_load_back_from_the_hub(local_hub, seg_clip_dir, chair_like, tmp_path, monkeypatch):  # noqa: F811
    from huggingface_hub import HfApi, ModelCard, constants
    from transformers import AutoModel

    base, repo = "openai-tiny/clip-224", "user/pointclip-parts"
    with pytest.raises(ValueError, match="local folder"):
        PointCLIPForZeroShotPartSegmentation.from_pretrained(seg_clip_dir).push_to_hub(repo)
    api = HfApi()
    api.create_repo(base)
    api.upload_folder(repo_id=base, folder_path=str(seg_clip_dir))
    model = PointCLIPForZeroShotPartSegmentation.from_pretrained(base)
    model.push_to_hub(repo)
    files = set(api.list_repo_files(repo))
    assert {"config.json", "README.md", "processor_config.json", "tokenizer_config.json"} <= files, files
    with open(api.hf_hub_download(repo, "config.json")) as file:
        assert json.load(file)["model_type"] == "pointclip_part_segmentation"
    card = ModelCard.load(repo)
    assert "part-segmentation" in card.data.tags and "zero-shot-classification" not in card.data.tags
    assert f'PointCLIPForZeroShotPartSegmentation.from_pretrained("{repo}")' in card.text

    parts = dict(parts=["back", "seat", "leg"], object_name="chair")
    expected = model.segment(chair_like, **parts)["scores"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-cache"))
    reloaded = AutoModel.from_pretrained(repo)
    assert isinstance(reloaded, PointCLIPForZeroShotPartSegmentation)
    assert np.array_equal(reloaded.segment(chair_like, **parts)["scores"], expected)

    np.save(tmp_path / "chair.npy", np.asarray(chair_like))
    remote = run_without_the_package(HUB_ONLY_SCRIPT, repo, str(tmp_path / "chair.npy"), folder=tmp_path,
                                     environment=hub_environment())  # fmt: skip
    assert remote["module"].startswith("transformers_modules")
    assert np.array_equal(np.asarray(remote["scores"], dtype=np.float32), np.asarray(expected, dtype=np.float32))


HUB_ONLY_SCRIPT = """
import json, sys
import numpy as np
from transformers import AutoModel
repo, cloud_path = sys.argv[1:3]
model = AutoModel.from_pretrained(repo, trust_remote_code=True)
scores = model.segment(np.load(cloud_path), parts=["back", "seat", "leg"], object_name="chair")["scores"]
print(json.dumps({"scores": np.asarray(scores).tolist(), "module": type(model).__module__}))
"""
