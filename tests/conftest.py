"""Shared fixtures: a tiny random CLIP (weights + tokenizer) built locally, never downloaded."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch
from datasets import Array2D, ClassLabel, Dataset, Features
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

import pointclip_hf

pytest_plugins = ["hub_server"]  # the local_hub fixture: a Hub-compatible server on 127.0.0.1

TINY_EMBED_DIM = 16
OPENAI_STYLE_IMAGE_PROCESSOR = {
    "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_processor_type": "CLIPImageProcessor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "size": 32,
}
TINY_IMAGE_SIZE = 32
SHAPE_CLASSES = ["cube", "sphere", "disc", "line"]


def byte_level_alphabet() -> list[str]:
    """The 256 printable characters GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def byte_level_vocab() -> dict[str, int]:
    """A merge-free CLIP BPE vocabulary: every byte alone and word-final, then <|startoftext|> 512 and
    <|endoftext|> 513."""
    alphabet = byte_level_alphabet()
    vocab = {char: index for index, char in enumerate(alphabet)}
    vocab.update({char + "</w>": 256 + index for index, char in enumerate(alphabet)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab


def build_tiny_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[])


def build_tiny_clip(seed: int = 0) -> CLIPModel:
    config = CLIPConfig(
        text_config=dict(
            vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
            image_size=TINY_IMAGE_SIZE, patch_size=8,
        ),
        projection_dim=TINY_EMBED_DIM,
        logit_scale_init_value=float(np.log(100.0)),
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval()


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

    from pointclip_hf.pipeline_pointclip import DEFAULT_CHECKPOINT

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


def synthetic_cloud(kind: int, rng: np.random.Generator, num_points: int = 256) -> np.ndarray:
    """Cube surface, sphere surface, flat disc or line segment, with a little noise."""
    n = num_points
    if kind == 0:
        points = rng.uniform(-1, 1, (n, 3))
        face_axis, face_side = rng.integers(0, 3, n), np.sign(rng.uniform(-1, 1, n))
        points[np.arange(n), face_axis] = face_side
    elif kind == 1:
        points = rng.normal(size=(n, 3))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    elif kind == 2:
        radius, angle = np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
        points = np.stack([radius * np.cos(angle), np.zeros(n), radius * np.sin(angle)], axis=1)
    else:
        t = rng.uniform(-1, 1, n)
        points = np.stack([t, 0.3 * t, 0.5 * t], axis=1)
    return (points + rng.normal(scale=0.01, size=points.shape)).astype(np.float32)


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
