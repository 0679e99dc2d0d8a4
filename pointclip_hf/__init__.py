"""pointclip_hf: CLIP for 3D point clouds (PointCLIP and PointCLIP V2), the Hugging Face way.

`import pointclip_hf` loads neither torch nor transformers: each name below is imported on first use, as in
transformers' and huggingface_hub's lazy `__init__`. The package registers its config, models, processors and
pipelines with transformers' Auto classes and pipeline registry when transformers loads those (`auto_registration`),
so `AutoModel.from_pretrained(...)` and `pipeline("point-cloud-zero-shot-classification")` work after this import.
Everything else lives in its module (`pointclip_hf.evaluation.evaluate`, `pointclip_hf.training.build_few_shot_model`,
...); the older top-level names still resolve, lazily, for code written against them.
"""

import importlib
from typing import TYPE_CHECKING

from .auto_registration import register_when_transformers_loads

__version__ = "0.1.0"

_MODULE_OF = {  # every name `import pointclip_hf` resolves, and its module; the first 15 are __all__
    "PointCLIPConfig": ".model.configuration_pointclip",
    "PointCLIPModel": ".model.modeling_pointclip",
    "PointCLIPOutput": ".model.modeling_pointclip",
    "PointCLIPPreTrainedModel": ".model.modeling_pointclip",
    "PointCLIPForZeroShotPartSegmentation": ".model.modeling_pointclip_part_segmentation",
    "PointCLIPFeatureExtractor": ".model.processing_pointclip",
    "PointCLIPProcessor": ".model.processing_pointclip",
    "PointCloudZeroShotClassificationPipeline": ".model.pipeline_pointclip",
    "PointCloudZeroShotPartSegmentationPipeline": ".model.pipeline_pointclip_part_segmentation",
    "PointCloudFileError": ".io",
    "load_point_cloud": ".io",
    "load_point_cloud_dataset": ".data",
    "render_views": ".model.projection",
    "TrainingConfig": ".training",
    "train_adapter": ".training",
    "PointCLIPPartSegmentationConfig": ".model.configuration_pointclip",
    "DEFAULT_CHECKPOINT": ".model.pipeline_pointclip",
    "PIPELINE_TASK": ".model.pipeline_pointclip",
    "PART_SEGMENTATION_TASK": ".model.pipeline_pointclip_part_segmentation",
    "PointCLIPPartSegmentationOutput": ".model.modeling_pointclip_part_segmentation",
    "PartViews": ".model.projection_part_segmentation",
    "render_part_views": ".model.projection_part_segmentation",
    "processor_for_model": ".model.processing_pointclip",
    "TEMPLATE_SETS": ".model.prompts",
    "load_class_prompts": ".model.prompts",
    "InterViewAdapter": ".model.inter_view_adapter",
    "convert_reference_adapter": ".model.inter_view_adapter",
    "build_few_shot_model": ".training",
    "build_cache": ".cache_building",
    "search_cache_on_validation": ".cache_building",
    "TestTimeCache": ".test_time_cache",
    "TestTimeCacheConfig": ".test_time_cache",
    "few_shot_subset": ".data",
    "train_validation_split": ".data",
    "fastest_safe_dtype": ".dtype_policy",
    "resolve_dtype": ".dtype_policy",
    "PointCloudEmbeddings": ".embeddings",
    "embed_point_clouds": ".embeddings",
    "embed_texts": ".embeddings",
    "encode_dataset": ".encoding",
    "EvaluationReport": ".evaluation",
    "classify_files": ".evaluation",
    "evaluate": ".evaluation",
    "build_model_card": ".model_card",
    "use_onnx_image_tower": ".onnx_image_tower",
    "PointCloudIndex": ".retrieval",
    "build_index": ".retrieval",
    "ensemble_logits": ".tuning",
    "load_logits": ".tuning",
    "pointclip_logits": ".tuning",
    "search_cache_weights": ".tuning",
    "search_ensemble_weight": ".tuning",
    "search_prompts": ".tuning",
    "search_view_weights": ".tuning",
    "tune_on_validation": ".tuning",
}
__all__ = [
    "PointCLIPConfig",
    "PointCLIPModel",
    "PointCLIPOutput",
    "PointCLIPPreTrainedModel",
    "PointCLIPForZeroShotPartSegmentation",
    "PointCLIPFeatureExtractor",
    "PointCLIPProcessor",
    "PointCloudZeroShotClassificationPipeline",
    "PointCloudZeroShotPartSegmentationPipeline",
    "PointCloudFileError",
    "load_point_cloud",
    "load_point_cloud_dataset",
    "render_views",
    "TrainingConfig",
    "train_adapter",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pointclip_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


if TYPE_CHECKING:
    from .data import load_point_cloud_dataset
    from .io import PointCloudFileError, load_point_cloud
    from .model.configuration_pointclip import PointCLIPConfig
    from .model.modeling_pointclip import PointCLIPModel, PointCLIPOutput, PointCLIPPreTrainedModel
    from .model.modeling_pointclip_part_segmentation import PointCLIPForZeroShotPartSegmentation
    from .model.pipeline_pointclip import PointCloudZeroShotClassificationPipeline
    from .model.pipeline_pointclip_part_segmentation import PointCloudZeroShotPartSegmentationPipeline
    from .model.processing_pointclip import PointCLIPFeatureExtractor, PointCLIPProcessor
    from .model.projection import render_views
    from .training import TrainingConfig, train_adapter

register_when_transformers_loads()
