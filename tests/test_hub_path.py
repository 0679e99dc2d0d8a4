"""The Hub path end to end on the local Hub server: Hub-only use with `trust_remote_code` in a process without the
package, revisions and Hub arguments reaching the processor, `push_to_hub` like transformers', the pinned base CLIP,
the card metadata and the files a save copies."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHAPE_CLASSES, build_tiny_clip, hub_environment
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError
from transformers.dynamic_module_utils import get_relative_import_files

import pointclip_hf
from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.model.pipeline_pointclip import PIPELINE_TASK
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.testing_utils import run_without_the_package
from pointclip_hf.training import build_few_shot_model

BASE = "openai-tiny/clip"
REPO = "user/pointclip-hub-path"
MODEL_FOLDER = Path(pointclip_hf.__file__).parent / "model"
AUTO_MAPPED_FILES = ("modeling_pointclip.py", "configuration_pointclip.py", "feature_extraction_pointclip.py",
                     "processing_pointclip.py")  # fmt: skip
MAX_COPIED_FILES = 10  # issue 20
MAX_COPIED_CODE_LINES = 2000  # issue 20; lines that are not blank, a comment or a docstring


def code_lines(path: Path) -> int:
    """Lines of `path` holding code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    documented = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            documented.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in documented)  # fmt: skip


@pytest.fixture
def hub_with_base_clip(local_hub, tiny_clip_dir):
    api = HfApi()
    api.create_repo(BASE)
    api.upload_folder(repo_id=BASE, folder_path=str(tiny_clip_dir))
    return local_hub


def trained_model(num_points: int = 256) -> PointCLIPModel:
    """A few-shot model on the Hub's base CLIP, with a random (non-trivial) adapter and a custom processor."""
    model = build_few_shot_model(BASE, SHAPE_CLASSES, seed=0)
    model.processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection_style="pointclip_v1_fewshot", num_points=num_points, image_size=32),
        model.processor.tokenizer, model.config.prompt_templates,
    )  # fmt: skip
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.normal_(0, 0.1)
    return model.eval()


def scores(predictions) -> dict:
    return {p["label"]: round(p["score"], 6) for p in predictions}


HUB_ONLY_SCRIPT = """
import json, sys
import numpy as np
from transformers import AutoModel, AutoProcessor, pipeline
repo, cloud_path, task = sys.argv[1:4]
cloud = np.load(cloud_path)
model = AutoModel.from_pretrained(repo, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
pipe = pipeline(task, model=repo, trust_remote_code=True)
print(json.dumps({
    "classify": model.classify(cloud),
    "processor_points": processor.feature_extractor.num_points,
    "pipeline": pipe(cloud),
    "module": type(model).__module__,
}))
"""


def test_hub_only_use_with_trust_remote_code(hub_with_base_clip, tmp_path, example_clouds):
    """Problem 1: in a fresh `python -I` process without the package, with standard input closed."""
    model = trained_model()
    model.push_to_hub(REPO)
    np.save(tmp_path / "cloud.npy", example_clouds[0])
    remote = run_without_the_package(HUB_ONLY_SCRIPT, REPO, str(tmp_path / "cloud.npy"), PIPELINE_TASK,
                                     folder=tmp_path, environment=hub_environment())  # fmt: skip
    assert remote["module"].startswith("transformers_modules")
    assert remote["processor_points"] == 256
    expected = scores(model.classify(example_clouds[0]))
    assert scores(remote["classify"]) == expected and scores(remote["pipeline"]) == expected


def test_revision_and_hub_arguments_reach_the_processor(hub_with_base_clip, example_clouds):
    """Problem 2: the processor comes from the model's revision, not from `main`."""
    trained_model(num_points=2048).push_to_hub(REPO)
    dev_model = trained_model(num_points=256)
    dev_model.push_to_hub(REPO, revision="dev")  # the branch does not exist yet: it is created
    reloaded = PointCLIPModel.from_pretrained(REPO, revision="dev")
    assert reloaded.loading_kwargs["revision"] == "dev"
    assert processor_for_model(reloaded).feature_extractor.num_points == 256
    assert processor_for_model(PointCLIPModel.from_pretrained(REPO)).feature_extractor.num_points == 2048
    assert scores(reloaded.classify(example_clouds[0])) == scores(dev_model.classify(example_clouds[0]))


def test_base_clip_is_pinned_to_its_commit(hub_with_base_clip, tiny_clip_dir, tmp_path, example_clouds):
    model = trained_model()
    commit = HfApi().model_info(BASE).sha
    assert model.config.clip_revision == commit
    model.push_to_hub(REPO)
    expected = scores(model.classify(example_clouds[0]))
    build_tiny_clip(seed=5).save_pretrained(tmp_path / "changed")  # the base repo's main moves on
    HfApi().upload_folder(repo_id=BASE, folder_path=str(tmp_path / "changed"))
    reloaded = PointCLIPModel.from_pretrained(REPO)
    assert reloaded.config.clip_revision == commit
    assert scores(reloaded.classify(example_clouds[0])) == expected


def test_push_to_hub_takes_transformers_arguments(hub_with_base_clip):
    """Problem 5: tags, commit_description, private, create_pr; our card, never transformers' generic one."""
    model = trained_model()
    model.push_to_hub(REPO, tags=["my-tag"], commit_message="first", commit_description="a longer description")
    api = HfApi()
    assert api.list_repo_commits(REPO)[0].title == "first"
    card = ModelCard.load(REPO)
    assert "my-tag" in card.data.tags and "point-cloud" in card.data.tags
    model.push_to_hub(REPO, create_pr=True)
    with pytest.raises(TypeError, match="unexpected arguments"):
        model.push_to_hub("user/never-created", not_an_argument=1)
    with pytest.raises(TypeError, match="tags"):
        model.push_to_hub("user/never-created", tags="one-string")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("user/never-created")


def test_push_refuses_local_paths_before_creating_anything(hub_with_base_clip, tiny_clip_dir, tmp_path):
    local = build_few_shot_model(tiny_clip_dir, SHAPE_CLASSES, seed=0)
    with pytest.raises(ValueError, match="local folder"):
        local.push_to_hub("user/local-base")
    with pytest.raises(ValueError, match="local path"):
        trained_model().push_to_hub("user/local-dataset", dataset_name=str(tmp_path))
    for repo in ("user/local-base", "user/local-dataset"):
        with pytest.raises(RepositoryNotFoundError):
            HfApi().repo_info(repo)


def test_existing_readme_is_kept_and_metadata_merged(hub_with_base_clip, tmp_path):
    model = trained_model()
    model.push_to_hub(REPO)
    card = ModelCard.load(REPO)
    card.text = "\n# My own words\n\nHand-written.\n"
    card.data.license = "apache-2.0"
    card.data.tags = card.data.tags + ["hand-tag"]
    card.push_to_hub(REPO)
    model.push_to_hub(REPO, shots=4)
    kept = ModelCard.load(REPO)
    assert "Hand-written." in kept.text and kept.data.license == "apache-2.0"
    assert "hand-tag" in kept.data.tags and "point-cloud" in kept.data.tags
    model.push_to_hub(REPO, replace_model_card=True)
    assert "Hand-written." not in ModelCard.load(REPO).text


def test_save_pretrained_push_to_hub_goes_our_way(hub_with_base_clip, tmp_path):
    model = trained_model()
    model.save_pretrained(tmp_path / "folder", push_to_hub=True, repo_id=REPO, commit_message="via save")
    files = set(HfApi().list_repo_files(REPO))
    assert {"config.json", "model.safetensors", "processor_config.json", "README.md"} <= files
    assert "Model Card for Model ID" not in ModelCard.load(REPO).text
    assert (tmp_path / "folder" / "model.safetensors").exists()


@pytest.mark.parametrize("save_kwargs", [dict(max_shard_size="20KB"), dict(variant="v1")])
def test_sharded_and_variant_saves_load_back(hub_with_base_clip, tmp_path, example_clouds, save_kwargs):
    model = trained_model()
    model.save_pretrained(tmp_path, **save_kwargs)
    processor_for_model(model).save_pretrained(tmp_path)
    load_kwargs = {"variant": save_kwargs["variant"]} if "variant" in save_kwargs else {}
    reloaded = PointCLIPModel.from_pretrained(tmp_path, **load_kwargs)
    for key, value in model.adapter.state_dict().items():
        assert torch.equal(reloaded.adapter.state_dict()[key], value), key
    assert scores(reloaded.classify(example_clouds[0])) == scores(model.classify(example_clouds[0]))


def test_card_metadata(hub_with_base_clip):
    """Problem 6: no text task, Hub dataset ids, the papers, the base model's license when known."""
    model = trained_model()
    model.config.clip_model_name_or_path = "openai/clip-vit-base-patch16"
    from pointclip_hf.model_card import build_model_card

    data = build_model_card(model, dataset_name="modelnet40").data
    assert data.pipeline_tag not in ("zero-shot-classification", "text-classification")
    assert data.datasets == ["jxie/modelnet40"] and data.license == "mit"
    assert "arxiv:2112.02413" in data.tags


def test_save_copies_the_import_closure_of_the_classifier_files(tiny_clip_dir, tmp_path):
    """The remote-code files a save writes are the auto-mapped files and what they import by transformers' own scan
    (imports inside functions count): at most `MAX_COPIED_FILES`, with at most `MAX_COPIED_CODE_LINES` of code. They
    import one another and no tooling: no relative import outside them, no `from . import name` (the scan would miss
    it), `pointclip_hf` only inside a `try` (a file reader, the Hub upload, `build_cache` and the part-segmentation
    projection, which the installed package lends; transformers skips imports in a `try` when it checks that a Hub
    repo's imports are installed)."""
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, use_adapter=True, projection_style="pointclip_v1_fewshot",
                                           label_names=SHAPE_CLASSES)  # fmt: skip
    model.save_pretrained(tmp_path)
    processor_for_model(model).save_pretrained(tmp_path)
    copied = {path.name for path in tmp_path.glob("*.py")}
    closure = set(AUTO_MAPPED_FILES)
    for name in AUTO_MAPPED_FILES:
        closure.update(Path(path).name for path in get_relative_import_files(MODEL_FOLDER / name))
    assert copied == closure
    assert len(copied) <= MAX_COPIED_FILES, sorted(copied)
    assert sum(code_lines(tmp_path / name) for name in copied) <= MAX_COPIED_CODE_LINES
    for name in copied:
        tree = ast.parse((tmp_path / name).read_text())
        guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try) for node in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and f"{node.module}.py" in copied, f"{name} imports tooling: {node.module}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
                if any(module.split(".")[0] == "pointclip_hf" for module in modules):
                    assert id(node) in guarded, f"{name} needs pointclip_hf outside a try: {modules}"
