"""Shared fixtures: a tiny random CLIP (weights + tokenizer) built locally, never downloaded."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
from datasets import Array2D, ClassLabel, Dataset, Features

import pointclip_hf
from pointclip_hf.testing_utils import (  # noqa: F401  (the tests import them from here)
    SHAPE_CLASSES,
    build_tiny_clip,
    build_tiny_tokenizer,
    synthetic_cloud,
)

pytest_plugins = ["hub_server"]  # the local_hub fixture: a Hub-compatible server on 127.0.0.1

OPENAI_STYLE_IMAGE_PROCESSOR = {
    "crop_size": 32,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_processor_type": "CLIPImageProcessor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 32,
}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A folder holding a tiny random CLIP checkpoint and its tokenizer, as `openai/clip-*` repos do."""
    path = tmp_path_factory.mktemp("tiny-clip")
    build_tiny_clip().save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(OPENAI_STYLE_IMAGE_PROCESSOR))  # as the openai repos
    return path


@pytest.fixture
def hub_with_default_clip(local_hub, tiny_clip_dir):
    """The local Hub server with the tiny CLIP uploaded as the package's default checkpoint."""
    from huggingface_hub import HfApi

    from pointclip_hf.model.pipeline_pointclip import DEFAULT_CHECKPOINT

    api = HfApi()
    api.create_repo(DEFAULT_CHECKPOINT)
    api.upload_folder(repo_id=DEFAULT_CHECKPOINT, folder_path=str(tiny_clip_dir))
    return local_hub


@pytest.fixture(scope="session")
def zero_shot_model(tiny_clip_dir):
    return pointclip_hf.PointCLIPModel.from_pretrained(tiny_clip_dir)


@pytest.fixture(scope="session")
def example_clouds():
    """Two clouds [2, 1024, 3] from the reference fixtures (a cube and a chair, unit sphere)."""
    data = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "reference_subset.npz"))
    return data["points"].astype(np.float32)


def hub_environment() -> dict[str, str]:
    """This process's Hub settings (the local Hub server's endpoint and token), online: for a fresh process."""
    environment = {key: value for key, value in os.environ.items() if key.startswith(("HF_", "HUGGINGFACE"))}
    return {**environment, "HF_HUB_OFFLINE": "0"}


def make_shape_dataset(seed: int, per_class: int, num_points: int = 256) -> Dataset:
    """A labelled dataset of SHAPE_CLASSES clouds (`points` Array2D, `label` ClassLabel), `per_class` of each."""
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for label in range(len(SHAPE_CLASSES)):
        for _ in range(per_class):
            points.append(synthetic_cloud(label, rng, num_points))
            labels.append(label)
    features = Features({"points": Array2D((None, 3), "float32"), "label": ClassLabel(names=SHAPE_CLASSES)})
    return Dataset.from_dict({"points": points, "label": labels}, features=features)


@pytest.fixture
def class_folder(tmp_path, example_clouds):
    """A class-folder dataset: root/<class>/*.npy, 3 clouds per class."""
    root = tmp_path / "shapes"
    for name, cloud in zip(["box", "chair"], example_clouds):
        (root / name).mkdir(parents=True)
        for i in range(3):
            np.save(root / name / f"{i}.npy", cloud[np.random.default_rng(i).permutation(1024)])
    return root
