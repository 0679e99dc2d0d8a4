"""pointclip_hf: CLIP for 3D point clouds (PointCLIP and PointCLIP V2), the Hugging Face way."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_pointclip import PointCLIPConfig
from .inter_view_adapter import InterViewAdapter, convert_reference_adapter
from .modeling_pointclip import PointCLIPModel, PointCLIPOutput, PointCLIPPreTrainedModel
from .pipeline_pointclip import PointCloudZeroShotClassificationPipeline
from .point_cloud_io import load_point_cloud
from .processing_pointclip import PointCLIPProcessor, PointCloudProcessor
from .projection import render_views

PIPELINE_TASK = "point-cloud-zero-shot-classification"

AutoConfig.register("pointclip", PointCLIPConfig, exist_ok=True)
AutoModel.register(PointCLIPConfig, PointCLIPModel, exist_ok=True)
AutoFeatureExtractor.register(PointCLIPConfig, PointCloudProcessor, exist_ok=True)
AutoProcessor.register(PointCLIPConfig, PointCLIPProcessor, exist_ok=True)
PointCLIPConfig.register_for_auto_class()
PointCLIPModel.register_for_auto_class("AutoModel")
PointCloudProcessor.register_for_auto_class("AutoFeatureExtractor")
PointCLIPProcessor.register_for_auto_class("AutoProcessor")
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=PointCloudZeroShotClassificationPipeline,
    pt_model=AutoModel,
    type="multimodal",
)

__version__ = "0.1.0"
__all__ = [
    "PIPELINE_TASK",
    "InterViewAdapter",
    "PointCLIPConfig",
    "PointCLIPModel",
    "PointCLIPOutput",
    "PointCLIPPreTrainedModel",
    "PointCLIPProcessor",
    "PointCloudProcessor",
    "PointCloudZeroShotClassificationPipeline",
    "convert_reference_adapter",
    "load_point_cloud",
    "render_views",
]
