"""`import pointclip_hf` and the command line's parser load neither torch nor transformers; the Auto classes and the
pipeline registry still know the package's classes whichever is imported first."""

import subprocess
import sys

import pytest

import pointclip_hf


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


HEAVY = "sorted(name for name in ('torch', 'transformers', 'datasets', 'huggingface_hub') if name in sys.modules)"


def test_import_and_cli_parser_load_nothing_heavy():
    code = f"""
import sys
import pointclip_hf
first = {HEAVY}
from pointclip_hf.cli import build_parser
build_parser().parse_args(["classify", "cloud.npy", "--labels", "a,b"])
print(first, {HEAVY})
"""
    assert run_python(code) == "[] []"


@pytest.mark.parametrize("order", ["package first", "transformers first"])
def test_auto_classes_and_pipelines_are_registered(order):
    imports = ["import pointclip_hf", "from transformers import AutoConfig, AutoModel, AutoProcessor, pipeline"]
    if order == "transformers first":
        imports.reverse()
    code = "\n".join(
        [
            *imports,
            """
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from transformers.pipelines import PIPELINE_REGISTRY
config_class = CONFIG_MAPPING["pointclip"]
print(*(mapping[config_class].__name__ for mapping in (MODEL_MAPPING, FEATURE_EXTRACTOR_MAPPING, PROCESSOR_MAPPING)),
      *sorted(task for task in PIPELINE_REGISTRY.get_supported_tasks() if task.startswith("point-cloud")))
""",
        ]
    )
    assert run_python(code).split() == [
        "PointCLIPModel", "PointCLIPFeatureExtractor", "PointCLIPProcessor",
        "point-cloud-zero-shot-classification", "point-cloud-zero-shot-part-segmentation",
    ]  # fmt: skip


def test_public_names():
    assert len(pointclip_hf.__all__) <= 15
    for name in dir(pointclip_hf):
        if not name.startswith("_"):
            assert getattr(pointclip_hf, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pointclip_hf.no_such_name  # noqa: B018
