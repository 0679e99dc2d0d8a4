"""Embeddings (unit vectors whose inner product is logit / logit scale) and the index: build, resume, search."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from pointclip_hf import PointCLIPModel
from pointclip_hf.cli import main as cli_main
from pointclip_hf.embeddings import embed_point_clouds, embed_texts
from pointclip_hf.model.pipeline_pointclip import label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.retrieval import IndexFileError, PointCloudIndex, build_index, index_build

LABELS = ["cube", "sphere", "disc", "line"]


def zero_shot_logits(model, clouds, labels):
    processor = processor_for_model(model)
    with torch.inference_mode():
        pixel_values = processor.feature_extractor(clouds)["pixel_values"]
        return model(pixel_values=pixel_values, text_embeds=label_embeddings(model, processor, labels)).logits


@pytest.mark.parametrize(
    "projection, adapter, view_weights",
    [
        ("pointclip_v1", False, None),
        ("pointclip_v1", False, "random"),
        ("pointclip_v2", False, None),
        ("pointclip_v1_fewshot", True, None),
        ("pointclip_v1_fewshot", True, "random"),
    ],
)
def test_inner_product_is_logit_over_logit_scale(tiny_clip_dir, example_clouds, projection, adapter, view_weights):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style=projection, use_adapter=adapter)
    if adapter:
        torch.manual_seed(0)
        for parameter in model.adapter.parameters():
            parameter.data.normal_(0, 0.3)
    if view_weights:
        model.set_view_weights(np.random.default_rng(0).uniform(0.2, 2.0, model.config.num_views))
    model.eval()
    clouds = embed_point_clouds(model, list(example_clouds), batch_size=1)
    texts = embed_texts(model, LABELS)
    assert clouds.embeds.shape == (2, model.config.num_views * model.config.embed_dim) == (2, texts.shape[1])
    torch.testing.assert_close(clouds.embeds.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(texts.norm(dim=-1), torch.ones(len(LABELS)))
    logits = zero_shot_logits(model, example_clouds, LABELS)
    torch.testing.assert_close(clouds.embeds @ texts.T, logits / clouds.logit_scale[:, None], rtol=1e-5, atol=1e-6)
    alone = embed_point_clouds(model, example_clouds[1])
    torch.testing.assert_close(alone.embeds[0], clouds.embeds[1])  # independent of the batch


def write_clouds(folder, count=6):
    from conftest import synthetic_cloud

    rng = np.random.default_rng(3)
    folder.mkdir()
    for i in range(count):
        np.save(folder / f"c{i}.npy", synthetic_cloud(i % 4, rng))
    return sorted(str(p) for p in folder.glob("*.npy"))


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_index_a_folder_and_search_by_text_and_example(zero_shot_model, tmp_path, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    paths = write_clouds(tmp_path / "clouds")
    built = build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "index", batch_size=4, progress=False)
    index = PointCloudIndex.load(tmp_path / "index", backend=backend)
    torch.testing.assert_close(index.embeds, built.embeds)
    assert [item["path"] for item in index.items] == paths

    expected = embed_point_clouds(zero_shot_model, paths)
    torch.testing.assert_close(index.embeds, expected.embeds, rtol=1e-5, atol=1e-6)
    results = index.search_text(zero_shot_model, ["cube", "line"], top_k=3)
    scores = expected.embeds @ embed_texts(zero_shot_model, ["cube", "line"]).T
    for column, hits in enumerate(results):
        order = scores[:, column].argsort(descending=True)[:3].tolist()
        assert [hit["path"] for hit in hits] == [paths[i] for i in order]
        np.testing.assert_allclose([hit["score"] for hit in hits], scores[order, column].numpy(), rtol=1e-4)
    like = index.search_like(zero_shot_model, paths[2], top_k=2)[0]
    assert like[0]["path"] == paths[2] and like[0]["score"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_index_files_get_the_permissions_of_plain_files(zero_shot_model, tmp_path, umask):
    write_clouds(tmp_path / "clouds", count=2)
    old = os.umask(umask)
    try:
        build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "index", progress=False)
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~umask
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "index").iterdir()}
    assert modes == dict.fromkeys(["index.json", "embeddings.safetensors", "items.json"], expected)


def test_index_resumes_from_its_chunks(zero_shot_model, tmp_path, monkeypatch):
    write_clouds(tmp_path / "clouds", count=7)
    complete = build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "full", batch_size=2, progress=False)

    monkeypatch.setattr(index_build, "CHUNK_CLOUDS", 2)
    original = index_build.write_chunk
    calls = []

    def crash_after_two_chunks(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        original(*args)

    monkeypatch.setattr(index_build, "write_chunk", crash_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "part", batch_size=2, progress=False)
    assert len(list((tmp_path / "part" / "chunks").glob("*.safetensors"))) == 2
    monkeypatch.setattr(index_build, "write_chunk", original)
    embedded = []
    source = index_build.FileSource
    monkeypatch.setattr(index_build, "FileSource", lambda paths, indices, e: embedded.extend(indices) or
                        source(paths, indices, e))  # fmt: skip
    resumed = build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "part", batch_size=2, progress=False)
    assert embedded == [4, 5, 6]
    assert torch.equal(resumed.embeds, complete.embeds)
    assert not (tmp_path / "part" / "chunks").exists()


def test_index_refuses_another_model_and_damaged_files(zero_shot_model, tiny_clip_dir, tmp_path):
    write_clouds(tmp_path / "clouds", count=3)
    build_index(zero_shot_model, tmp_path / "clouds", tmp_path / "index", progress=False)
    v2 = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2")
    index = PointCloudIndex.load(tmp_path / "index")
    with pytest.raises(IndexFileError, match="another model or processor"):
        index.search_text(v2, ["cube"])
    with pytest.raises(IndexFileError, match=r"index.*another"):
        build_index(v2, tmp_path / "clouds", tmp_path / "index", progress=False)
    (tmp_path / "index" / "embeddings.safetensors").write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match="damaged"):
        PointCloudIndex.load(tmp_path / "index")
    with pytest.raises(IndexFileError, match="no finished index"):
        PointCloudIndex.load(tmp_path / "clouds")


def test_an_index_takes_queries_of_any_up_axis_but_only_its_own_sampling(tiny_clip_dir, tmp_path, capsys):
    write_clouds(tmp_path / "clouds", count=3)
    build_index(PointCLIPModel.from_pretrained(tiny_clip_dir, sampling="first"), tmp_path / "clouds",
                tmp_path / "index", progress=False)  # fmt: skip
    index = PointCloudIndex.load(tmp_path / "index")
    z_up_queries = PointCLIPModel.from_pretrained(tiny_clip_dir, sampling="first", up_axis="z")
    assert len(index.search_text(z_up_queries, ["cube"], top_k=1)[0]) == 1
    with pytest.raises(IndexFileError, match="another model or processor"):
        index.search_text(PointCLIPModel.from_pretrained(tiny_clip_dir, sampling="random"), ["cube"])
    command = ["retrieve", str(tmp_path / "index"), "--model", str(tiny_clip_dir), "--text", "cube", "--json"]
    assert cli_main(command) == 0, "retrieve loads the model with the sampling the index was built with"
    assert json.loads(capsys.readouterr().out)[0]["query"] == "cube"


def test_index_a_dataset_keeps_rows_and_labels(zero_shot_model, tmp_path):
    from conftest import make_shape_dataset

    dataset = make_shape_dataset(seed=1, per_class=2, num_points=128)
    index = build_index(zero_shot_model, dataset, tmp_path / "index", batch_size=3, progress=False)
    assert len(index) == len(dataset)
    names = dataset.features["label"].names
    assert index.items == [{"row": i, "label": names[label]} for i, label in enumerate(dataset["label"])]
    hit = index.search_like(zero_shot_model, np.asarray(dataset[5]["points"]), top_k=1)[0][0]
    assert hit["row"] == 5


def test_index_a_class_folder_tree_names_the_files(zero_shot_model, tmp_path):
    from pointclip_hf import load_point_cloud_dataset

    (tmp_path / "tree").mkdir()
    write_clouds(tmp_path / "tree" / "shape", count=2)
    dataset = load_point_cloud_dataset(tmp_path / "tree")
    index = build_index(zero_shot_model, dataset, tmp_path / "index", progress=False)
    files = sorted(str(p) for p in (tmp_path / "tree" / "shape").glob("*.npy"))
    assert index.items == [{"row": i, "path": path, "label": "shape"} for i, path in enumerate(files)]
