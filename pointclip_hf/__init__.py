"""pointclip_hf: CLIP for 3D point clouds (PointCLIP and PointCLIP V2), the Hugging Face way."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .cache_building import build_cache, search_cache_on_validation
from .configuration_pointclip import PointCLIPConfig, PointCLIPPartSegmentationConfig
from .data import few_shot_subset, load_point_cloud_dataset, train_validation_split
from .dtype_policy import fastest_safe_dtype, resolve_dtype
from .embeddings import PointCloudEmbeddings, embed_point_clouds, embed_texts
from .encoding import encode_dataset
from .evaluation import EvaluationReport, classify_files, evaluate
from .inter_view_adapter import InterViewAdapter, convert_reference_adapter
from .io import PointCloudFileError, load_point_cloud
from .model_card import build_model_card
from .modeling_pointclip import PointCLIPModel, PointCLIPOutput, PointCLIPPreTrainedModel
from .modeling_pointclip_part_segmentation import PointCLIPForZeroShotPartSegmentation, PointCLIPPartSegmentationOutput
from .onnx_image_tower import use_onnx_image_tower
from .pipeline_pointclip import DEFAULT_CHECKPOINT, PIPELINE_TASK, PointCloudZeroShotClassificationPipeline
from .pipeline_pointclip_part_segmentation import PART_SEGMENTATION_TASK, PointCloudZeroShotPartSegmentationPipeline
from .processing_pointclip import PointCLIPProcessor, PointCloudProcessor, processor_for_model
from .projection import render_views
from .projection_part_segmentation import PartViews, render_part_views
from .prompts import TEMPLATE_SETS, load_class_prompts
from .retrieval import PointCloudIndex, build_index
from .test_time_cache import TestTimeCache, TestTimeCacheConfig
from .training import TrainingConfig, build_few_shot_model, train_adapter
from .tuning import (
    ensemble_logits,
    load_logits,
    pointclip_logits,
    search_cache_weights,
    search_ensemble_weight,
    search_prompts,
    search_view_weights,
    tune_on_validation,
)

AutoConfig.register("pointclip", PointCLIPConfig, exist_ok=True)
AutoConfig.register("pointclip_part_segmentation", PointCLIPPartSegmentationConfig, exist_ok=True)
AutoModel.register(PointCLIPConfig, PointCLIPModel, exist_ok=True)
AutoModel.register(PointCLIPPartSegmentationConfig, PointCLIPForZeroShotPartSegmentation, exist_ok=True)
for config_class in (PointCLIPConfig, PointCLIPPartSegmentationConfig):
    AutoFeatureExtractor.register(config_class, PointCloudProcessor, exist_ok=True)
    AutoProcessor.register(config_class, PointCLIPProcessor, exist_ok=True)
    config_class.register_for_auto_class()
PointCLIPModel.register_for_auto_class("AutoModel")
PointCloudProcessor.register_for_auto_class("AutoFeatureExtractor")
PointCLIPProcessor.register_for_auto_class("AutoProcessor")
PointCLIPForZeroShotPartSegmentation.register_for_auto_class("AutoModel")
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=PointCloudZeroShotClassificationPipeline,
    pt_model=PointCLIPModel,
    default={"model": (DEFAULT_CHECKPOINT, "main")},
    type="multimodal",
)
PIPELINE_REGISTRY.register_pipeline(
    PART_SEGMENTATION_TASK,
    pipeline_class=PointCloudZeroShotPartSegmentationPipeline,
    pt_model=PointCLIPForZeroShotPartSegmentation,
    default={"model": (DEFAULT_CHECKPOINT, "main")},
    type="multimodal",
)

__version__ = "0.1.0"
__all__ = [
    "PART_SEGMENTATION_TASK",
    "PIPELINE_TASK",
    "TEMPLATE_SETS",
    "EvaluationReport",
    "InterViewAdapter",
    "PartViews",
    "PointCLIPForZeroShotPartSegmentation",
    "PointCLIPPartSegmentationOutput",
    "PointCLIPConfig",
    "PointCLIPModel",
    "PointCLIPOutput",
    "PointCLIPPartSegmentationConfig",
    "PointCLIPPreTrainedModel",
    "PointCLIPProcessor",
    "PointCloudEmbeddings",
    "PointCloudFileError",
    "PointCloudIndex",
    "PointCloudProcessor",
    "PointCloudZeroShotClassificationPipeline",
    "PointCloudZeroShotPartSegmentationPipeline",
    "TestTimeCache",
    "TestTimeCacheConfig",
    "TrainingConfig",
    "build_cache",
    "build_few_shot_model",
    "build_index",
    "build_model_card",
    "classify_files",
    "convert_reference_adapter",
    "embed_point_clouds",
    "embed_texts",
    "encode_dataset",
    "ensemble_logits",
    "evaluate",
    "fastest_safe_dtype",
    "few_shot_subset",
    "load_class_prompts",
    "load_logits",
    "load_point_cloud",
    "load_point_cloud_dataset",
    "pointclip_logits",
    "processor_for_model",
    "render_part_views",
    "render_views",
    "resolve_dtype",
    "search_cache_on_validation",
    "search_cache_weights",
    "search_ensemble_weight",
    "search_prompts",
    "search_view_weights",
    "train_adapter",
    "train_validation_split",
    "tune_on_validation",
    "use_onnx_image_tower",
]
