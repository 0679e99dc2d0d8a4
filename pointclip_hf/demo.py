"""The Gradio demo: drop in a point-cloud file, type labels, pick a projection; see the cloud in 3D, the depth views the
model sees and the ranked labels. `pointclip demo` serves it, and `examples/space/app.py` runs it as a Space."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from transformers import PreTrainedConfig

from .commands._options import PROJECTIONS, label_list
from .io.errors import max_cloud_bytes
from .labels import check_labels
from .modeling_pointclip import PointCLIPModel
from .point_cloud_io import SUPPORTED_EXTENSIONS, load_point_cloud
from .processing_pointclip import processor_for_model
from .projection import render_views
from .visualization import views_to_grid

DEFAULT_LABELS = "cup, table, teddy bear, chair, airplane, lamp"
SHIPPED_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INPUT_ERRORS = (ValueError, TypeError, OSError, StrictDataclassError)
_MAX_PLOTTED_POINTS = 4096


def import_gradio():
    """Gradio, or an `ImportError` naming the extra that brings it."""
    try:
        import gradio
    except ImportError:
        raise ImportError('The demo needs Gradio: pip install "pointclip_hf[demo]".') from None
    return gradio


@dataclass
class DemoModels:
    r"""
    The demo's model for each projection it offers, loaded on first use. A plain CLIP checkpoint offers every
    projection; a saved PointCLIP model (its adapter, view weights and prompts belong to one projection) only its own.

    Args:
        model_name_or_path (`str`):
            A Hub id or folder of a CLIP or PointCLIP checkpoint.
        device (`str`, *optional*):
            Where to run the model, e.g. `"cuda"`.
    """

    model_name_or_path: str
    device: str | None = None
    projections: list[str] = field(init=False)
    _models: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        config_dict, _ = PreTrainedConfig.get_config_dict(self.model_name_or_path)
        if config_dict.get("model_type") == "clip":
            self.projections = list(PROJECTIONS)
            return
        model = self._load({})
        self.projections = [model.config.projection_style]
        self._models[model.config.projection_style] = model

    def get(self, projection: str) -> PointCLIPModel:
        """The model for `projection`, loaded and moved to the device on first use."""
        if projection not in self.projections:
            raise ValueError(f"This model offers the projections {self.projections}, not {projection!r}.")
        if projection not in self._models:
            self._models[projection] = self._load({"projection_style": projection})
        return self._models[projection]

    def _load(self, config_overrides: dict) -> PointCLIPModel:
        model = PointCLIPModel.from_pretrained(self.model_name_or_path, **config_overrides).eval()
        model.processor = processor_for_model(model)
        return model.to(self.device) if self.device else model

    def default_labels(self) -> str:
        """The trained classes of a PointCLIP model with an adapter, else a few everyday objects."""
        label_names = self.get(self.projections[0]).config.label_names
        return ", ".join(label_names) if label_names else DEFAULT_LABELS


@dataclass
class DemoResult:
    r"""
    What the page shows for one cloud.

    Args:
        points (`np.ndarray` of shape `(points, 3)`, *optional*):
            The cloud as the model reads it (centred, scaled, sampled), for the 3D view.
        views (`PIL.Image.Image`, *optional*):
            The captioned depth views.
        scores (`dict[str, float]`, *optional*):
            Label to score, best first.
        error (`str`, *optional*):
            The one-line message the CLI prints after `error:`, when the input was refused.
    """

    points: np.ndarray | None = None
    views: Image.Image | None = None
    scores: dict[str, float] | None = None
    error: str | None = None


def classify_file(models: DemoModels, path: str | None, labels_text: str, projection: str) -> DemoResult:
    r"""
    Classify one point-cloud file as `pointclip classify FILE --labels ...` does, and render what the model sees.

    Args:
        models ([`DemoModels`]):
            The demo's models.
        path (`str`, *optional*):
            The uploaded or picked file.
        labels_text (`str`):
            Comma-separated candidate labels.
        projection (`str`):
            One of `models.projections`.

    Returns:
        [`DemoResult`]: the points, views and scores, or only `error` when an input is refused.
    """
    if not path:
        return DemoResult(error="No point-cloud file: drop one in or pick an example.")
    try:
        labels = check_labels(label_list(labels_text or ""))
        model = models.get(projection)
        cloud = load_point_cloud(path)  # read once: the scores and the views come from the same points
        predictions = model.classify(cloud, labels)
        points = model.processor.feature_extractor.prepare_points(cloud)
        views = render_views(points, model.config.projection_style)[0]
    except INPUT_ERRORS as error:
        return DemoResult(error=str(error).replace(str(path), os.path.basename(path)))
    scores = {prediction["label"]: prediction["score"] for prediction in predictions}
    return DemoResult(points=points[0].numpy(), views=views_to_grid(views), scores=scores)


def point_cloud_figure(points: np.ndarray):
    r"""
    An interactive 3D scatter of a cloud (y up, as the projections assume), coloured by height.

    Args:
        points (`np.ndarray` of shape `(points, 3)`):
            The cloud; at most 4,096 evenly spaced points are drawn.

    Returns:
        `plotly.graph_objects.Figure`.
    """
    import plotly.graph_objects as go

    points = points[:: max(1, -(-len(points) // _MAX_PLOTTED_POINTS))]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    marker = dict(size=2, color=y, colorscale="Viridis")
    figure = go.Figure(go.Scatter3d(x=x, y=z, z=y, mode="markers", marker=marker, hoverinfo="skip"))
    axis = dict(showticklabels=False, title="")
    figure.update_layout(
        margin=dict(l=0, r=0, t=0, b=0), height=360, scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data")
    )
    return figure


def example_files(folder: str | os.PathLike | None = None) -> list[str]:
    """The `.npy` clouds in `folder` (default: the repository's `examples/`, when there is one), sorted."""
    folder = Path(folder) if folder is not None else SHIPPED_EXAMPLES
    return [str(path) for path in sorted(folder.glob("*.npy"))] if folder.is_dir() else []


def build_demo(models: DemoModels, examples: list[str] | None = None):
    r"""
    The demo page as a `gradio.Blocks`; its button is also the API endpoint `/classify` (file, labels, projection ->
    3D plot, views image, label scores, error line).

    Args:
        models ([`DemoModels`]):
            The models to classify with.
        examples (`list[str]`, *optional*):
            Point-cloud files offered as examples; defaults to [`example_files`].

    Returns:
        `gradio.Blocks`: call `.launch()` on it.
    """
    gr = import_gradio()
    examples = example_files() if examples is None else examples
    with gr.Blocks(title="PointCLIP", analytics_enabled=False) as demo:
        gr.Markdown(
            "# PointCLIP: zero-shot 3D classification with CLIP\n"
            f"Drop in a point cloud or a mesh ({' '.join(SUPPORTED_EXTENSIONS)}), type labels. "
            f"Model: `{models.model_name_or_path}`"
        )
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_components(gr, models)
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[inputs[0]], cache_examples=False)
            with gr.Column(scale=2):
                outputs = _output_components(gr)
        button.click(_page_handler(gr, models), inputs=inputs, outputs=outputs, api_name="classify")
    return demo


def _input_components(gr, models: DemoModels) -> list:
    cloud = gr.File(label="Point cloud or mesh file", type="filepath", elem_id="cloud-file")
    labels = gr.Textbox(label="Candidate labels (comma-separated)", value=models.default_labels(), elem_id="labels")
    projection = gr.Dropdown(
        models.projections, value=models.projections[0], label="Projection", interactive=len(models.projections) > 1
    )
    return [cloud, labels, projection]


def _output_components(gr) -> list:
    error = gr.Markdown(elem_id="error-line")
    scores = gr.Label(label="Labels, ranked", num_top_classes=10, elem_id="scores")
    with gr.Row():
        plot = gr.Plot(label="The cloud (drag to turn)")
        views = gr.Image(label="The depth views the model sees", type="pil", format="png")
    return [plot, views, scores, error]


def _page_handler(gr, models: DemoModels):
    def classify(path, labels_text, projection):
        result = classify_file(models, path, labels_text, projection)
        if result.error is not None:
            return None, None, None, f"**Error:** {result.error}"
        return point_cloud_figure(result.points), result.views, result.scores, ""

    return classify


def launch_demo(model_name_or_path: str, port: int | None = None, host: str | None = None, device: str | None = None,
                **launch_kwargs):  # fmt: skip
    r"""
    Build the demo for `model_name_or_path` and serve it (blocking unless `prevent_thread_lock=True` is passed).

    Args:
        model_name_or_path (`str`):
            A Hub id or folder of a CLIP or PointCLIP checkpoint.
        port (`int`, *optional*):
            The port (Gradio's default, 7860 or the next free one, when `None`).
        host (`str`, *optional*):
            The address to listen on (Gradio's default, 127.0.0.1, when `None`).
        device (`str`, *optional*):
            Where to run the model.
        launch_kwargs:
            More `gradio.Blocks.launch` arguments. `max_file_size` (the largest upload) defaults to the readers' cap,
            `POINTCLIP_MAX_CLOUD_BYTES` (1 GiB).
    """
    demo = build_demo(DemoModels(model_name_or_path, device=device))
    launch_kwargs.setdefault("max_file_size", max_cloud_bytes())
    return demo.launch(server_port=port, server_name=host, **launch_kwargs)


__all__ = ["DemoModels", "DemoResult", "build_demo", "classify_file", "example_files", "launch_demo",
           "point_cloud_figure"]  # fmt: skip
