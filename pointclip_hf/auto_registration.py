"""Registration with transformers' Auto classes and pipeline registry, made when transformers loads them.

`import pointclip_hf` must not load torch or transformers (the command line starts in well under a second), yet
`AutoModel.from_pretrained(saved folder)` and `pipeline("point-cloud-zero-shot-classification")` must work after it.
So each registration runs right after the transformers module it extends has been imported (a `sys.meta_path` finder
that wraps that module's loader), or at once when that module is already loaded.
"""

import importlib.abc
import sys
import threading
from collections.abc import Callable


def _register_config() -> None:
    from transformers import AutoConfig

    from .model.configuration_pointclip import PointCLIPConfig, PointCLIPPartSegmentationConfig

    AutoConfig.register("pointclip", PointCLIPConfig, exist_ok=True)
    AutoConfig.register("pointclip_part_segmentation", PointCLIPPartSegmentationConfig, exist_ok=True)


def _register_models() -> None:
    from transformers import AutoModel

    from .model.configuration_pointclip import PointCLIPConfig, PointCLIPPartSegmentationConfig
    from .model.modeling_pointclip import PointCLIPModel
    from .model.modeling_pointclip_part_segmentation import PointCLIPForZeroShotPartSegmentation

    AutoModel.register(PointCLIPConfig, PointCLIPModel, exist_ok=True)
    AutoModel.register(PointCLIPPartSegmentationConfig, PointCLIPForZeroShotPartSegmentation, exist_ok=True)


def _register_feature_extractor() -> None:
    from transformers import AutoFeatureExtractor

    from .model.configuration_pointclip import PointCLIPConfig, PointCLIPPartSegmentationConfig
    from .model.feature_extraction_pointclip import PointCLIPFeatureExtractor, PointCloudProcessor

    for config_class in (PointCLIPConfig, PointCLIPPartSegmentationConfig):
        AutoFeatureExtractor.register(config_class, PointCLIPFeatureExtractor, exist_ok=True)
    # Folders saved before the rename name the extractor "PointCloudProcessor"; it is looked up by class name.
    AutoFeatureExtractor.register(PointCloudProcessor.__name__, PointCloudProcessor, exist_ok=True)


def _register_processor() -> None:
    from transformers import AutoProcessor

    from .model.configuration_pointclip import PointCLIPConfig, PointCLIPPartSegmentationConfig
    from .model.processing_pointclip import PointCLIPProcessor

    for config_class in (PointCLIPConfig, PointCLIPPartSegmentationConfig):
        AutoProcessor.register(config_class, PointCLIPProcessor, exist_ok=True)


def _register_pipelines() -> None:
    from transformers.pipelines import PIPELINE_REGISTRY

    from .model.modeling_pointclip import PointCLIPModel
    from .model.modeling_pointclip_part_segmentation import PointCLIPForZeroShotPartSegmentation
    from .model.pipeline_pointclip import DEFAULT_CHECKPOINT, PIPELINE_TASK, PointCloudZeroShotClassificationPipeline
    from .model.pipeline_pointclip_part_segmentation import (
        PART_SEGMENTATION_TASK,
        PointCloudZeroShotPartSegmentationPipeline,
    )

    for task, pipeline_class, model_class in (
        (PIPELINE_TASK, PointCloudZeroShotClassificationPipeline, PointCLIPModel),
        (PART_SEGMENTATION_TASK, PointCloudZeroShotPartSegmentationPipeline, PointCLIPForZeroShotPartSegmentation),
    ):
        default = {"model": (DEFAULT_CHECKPOINT, "main")}
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=pipeline_class, pt_model=model_class, default=default, type="multimodal"
        )


REGISTRATIONS: dict[str, Callable[[], None]] = {
    "transformers.models.auto.configuration_auto": _register_config,
    "transformers.models.auto.modeling_auto": _register_models,
    "transformers.models.auto.feature_extraction_auto": _register_feature_extractor,
    "transformers.models.auto.processing_auto": _register_processor,
    "transformers.pipelines": _register_pipelines,
}


_WATCHED_PACKAGES = ("transformers.", "pointclip_hf.")
_pending: list[Callable[[], None]] = []
_pending_lock = threading.Lock()
_this_thread = threading.local()  # .loading: watched modules this thread is importing (imports nest); .registering


class _WatchedLoader(importlib.abc.Loader):
    """Runs the wrapped loader; once the thread imports no watched module any more (so every module a registration
    needs is complete), runs the registrations due."""

    def __init__(self, loader: importlib.abc.Loader, register: Callable[[], None] | None):
        self.loader, self.register = loader, register

    def __getattr__(self, name: str):  # get_code, get_source, is_package, ... (runpy, inspect, importlib.resources)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        _this_thread.loading = getattr(_this_thread, "loading", 0) + 1
        try:
            self.loader.exec_module(module)
        finally:
            _this_thread.loading -= 1
        if self.register is not None:
            with _pending_lock:
                _pending.append(self.register)
        _run_pending()


def _run_pending() -> None:
    if getattr(_this_thread, "loading", 0) or getattr(_this_thread, "registering", False):
        return
    _this_thread.registering = True
    try:
        while True:
            with _pending_lock:
                if not _pending:
                    return
                register = _pending.pop(0)
            register()
    finally:
        _this_thread.registering = False


class _RegistrationFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: gives transformers' and this package's modules, as the finders after it find them, a
    loader that counts nested imports, and the modules in `REGISTRATIONS` their registration."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(_WATCHED_PACKAGES):
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _WatchedLoader(spec.loader, REGISTRATIONS.get(fullname))
        return spec


def register_when_transformers_loads() -> None:
    """Register now with every transformers module already loaded, and install the finder for the others."""
    with _pending_lock:
        _pending.extend(register for name, register in REGISTRATIONS.items() if name in sys.modules)
    if not any(isinstance(finder, _RegistrationFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegistrationFinder())
    _run_pending()
