"""The Gradio demo: drop in a point-cloud file, type labels, pick a projection; see the cloud in 3D, the depth views the
model sees and the ranked labels. `pointclip demo` serves it, and `examples/space/app.py` runs it as a Space."""

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from transformers import PreTrainedConfig

from .dtype_policy import resolve_dtype
from .io import SUPPORTED_EXTENSIONS, load_point_cloud
from .io.errors import max_cloud_bytes
from .model.choices import CLASSIFICATION_STYLES, SAMPLING_METHODS, UP_AXES
from .model.feature_extraction_pointclip import file_up_axis
from .model.inter_view_adapter import fused_features
from .model.modeling_pointclip import PointCLIPModel
from .model.pipeline_pointclip import label_embeddings, model_label_order, scores_to_predictions
from .model.processing_pointclip import processor_for_model, with_point_options
from .model.projection import render_views
from .model.prompts import check_labels, check_labels_fit_model, comma_separated
from .test_time_cache import TestTimeCache
from .visualization import projection_views_image

DEFAULT_LABELS = "cup, table, teddy bear, chair, airplane, lamp"
SHIPPED_EXAMPLES = Path(__file__).resolve().parent / "example_clouds"  # package data: in every install
INPUT_ERRORS = (ValueError, TypeError, OSError, StrictDataclassError)
FORMAT_UP_AXIS = "format"  # the up-axis choice that keeps the file format's convention (up_axis=None)
_MAX_PLOTTED_POINTS = 4096
_PLOT_MARGIN = 1.05  # the 3D view's box is the cloud's bounding cube, widened by 5% so no point touches an edge
NEXT_STEP_HINT = "Now press **Classify**."
# Errors in a red box; the views image at its full width (never cropped to the panel's height), one row per grid row.
PAGE_CSS = """
#error-line p { background: #fef2f2; border: 1px solid #fca5a5; border-left: 4px solid #dc2626; color: #991b1b;
                border-radius: 6px; padding: 8px 12px; margin: 0; }
#next-step p { background: #eff6ff; border-left: 4px solid #2563eb; border-radius: 6px; padding: 6px 12px; margin: 0; }
#depth-views img { width: 100%; height: auto; object-fit: contain; }
#depth-views, #depth-views .image-container, #depth-views .image-frame { height: auto !important; max-height: none; }
"""


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
        dtype (`str`, *optional*, defaults to `"auto"`):
            As the CLI's `--dtype`: `"auto"` is bfloat16 where the hardware computes it natively, else float32.
        point_options (`dict`, *optional*):
            The processor's point settings (`sampling`, `up_axis`) the page starts with.
    """

    model_name_or_path: str
    device: str | None = None
    dtype: str = "auto"
    point_options: dict = field(default_factory=dict)
    projections: list[str] = field(init=False)
    _models: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        config_dict, _ = PreTrainedConfig.get_config_dict(self.model_name_or_path)
        if config_dict.get("model_type") == "clip":
            self.projections = list(CLASSIFICATION_STYLES)
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
        dtype = resolve_dtype(self.dtype, self.device)
        model = PointCLIPModel.from_pretrained(
            self.model_name_or_path, dtype=dtype, **config_overrides, **self.point_options
        ).eval()
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


@dataclass
class AdaptiveSession:
    r"""
    One demo session's test-time cache (TDA, see `pointclip_hf.test_time_cache`): the clouds classified in the session
    adapt the scores of the next ones, so a result depends on what came before (outside the batch-invariance
    guarantee). It starts afresh when the projection or the labels change.

    Args:
        key (`tuple`, *optional*):
            The projection and labels the cache belongs to.
        cache ([`TestTimeCache`], *optional*):
            The cache.
    """

    key: tuple | None = None
    cache: TestTimeCache | None = None

    @torch.inference_mode()
    def classify(self, model: PointCLIPModel, processor, cloud, labels: list[str], projection: str) -> list[dict]:
        """The ranked labels of one cloud with the session's cache, which the cloud then joins."""
        check_labels_fit_model(labels, model.config.label_names)
        if self.key != (projection, tuple(labels)):
            self.key, self.cache = (projection, tuple(labels)), TestTimeCache(len(labels))
        scored, columns = model_label_order(model, labels)
        pixel_values = processor.feature_extractor(cloud)["pixel_values"].to(model.device)
        output = model(pixel_values=pixel_values, text_embeds=label_embeddings(model, processor, scored))
        logits = output.logits if columns is None else output.logits[:, columns]
        logits = self.cache.adapt(fused_features(output.point_cloud_embeds), logits)
        return scores_to_predictions(logits, labels, None)[0]


def classify_file(models: DemoModels, path: str | None, labels_text: str, projection: str, sampling: str | None = None,
                  up_axis: str | None = None, session: AdaptiveSession | None = None) -> DemoResult:  # fmt: skip
    r"""
    Classify one point-cloud file as `pointclip classify FILE --labels ... [--sampling S] [--up-axis A]` does (with
    `session`, as `--test-time-cache` does in a stream), and render what the model sees.

    Args:
        models ([`DemoModels`]):
            The demo's models.
        path (`str`, *optional*):
            The uploaded or picked file.
        labels_text (`str`):
            Comma-separated candidate labels.
        projection (`str`):
            One of `models.projections`.
        sampling (`str`, *optional*):
            One of `SAMPLING_METHODS`; defaults to the model processor's.
        up_axis (`str`, *optional*):
            One of `UP_AXES`, or `"format"` for the file format's convention; defaults to the model processor's.
        session ([`AdaptiveSession`], *optional*):
            The session's test-time cache, when the session switched it on.

    Returns:
        [`DemoResult`]: the points, views and scores, or only `error` when an input is refused.
    """
    if not path:
        return DemoResult(error="No point-cloud file: drop one in or pick an example.")
    try:
        labels = check_labels(comma_separated(labels_text, "labels") if (labels_text or "").strip(" ,") else [])
        model = models.get(projection)
        processor = _with_choices(model.processor, path, sampling, up_axis)
        cloud = load_point_cloud(path)  # read once: the scores and the views come from the same points
        if session is None:
            predictions = model.classify(cloud, labels, processor=processor)
        else:
            predictions = session.classify(model, processor, cloud, labels, projection)
        points = processor.feature_extractor.prepare_points(cloud)
        views = render_views(points, model.config.projection_style)[0]
    except INPUT_ERRORS as error:
        return DemoResult(error=str(error).replace(str(path), os.path.basename(path)))
    scores = {prediction["label"]: prediction["score"] for prediction in predictions}
    views_image = projection_views_image(views, model.config.projection_style)
    return DemoResult(points=points[0].numpy(), views=views_image, scores=scores)


def _with_choices(processor, path: str, sampling: str | None, up_axis: str | None):
    """`processor` with the page's point settings. The cloud is passed on as an array, so the format's up axis (the
    `"format"` choice, or a processor's `None`) is resolved from `path` here."""
    options = {} if sampling is None else {"sampling": sampling}
    if up_axis is None:
        up_axis = processor.feature_extractor.up_axis
    options["up_axis"] = file_up_axis(path) if up_axis in (None, FORMAT_UP_AXIS) else up_axis
    return with_point_options(processor, **options)


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
    centre = (points.max(axis=0) + points.min(axis=0)) / 2
    half_side = max(float((points.max(axis=0) - points.min(axis=0)).max()) / 2 * _PLOT_MARGIN, 1e-6)
    # One cube for all three axes (plot axes: x, z, y): a tall cloud fits the view as a wide one does.
    axes = [
        dict(showticklabels=False, title="", range=[centre[i] - half_side, centre[i] + half_side]) for i in (0, 2, 1)
    ]
    scene = dict(
        xaxis=axes[0], yaxis=axes[1], zaxis=axes[2], aspectmode="cube", camera=dict(eye=dict(x=1.35, y=1.35, z=0.85))
    )
    figure.update_layout(margin=dict(l=0, r=0, t=32, b=0), height=400, scene=scene)
    return figure


def example_files(folder: str | os.PathLike | None = None) -> list[str]:
    """The `.npy` clouds in `folder` (default: the mug, table and teddy bear shipped with the package), sorted."""
    folder = Path(folder) if folder is not None else SHIPPED_EXAMPLES
    return [str(path) for path in sorted(folder.glob("*.npy"))] if folder.is_dir() else []


def build_demo(models: DemoModels, examples: list[str] | None = None):
    r"""
    The demo page as a `gradio.Blocks`; its button is also the API endpoint `/classify` (file, labels, projection,
    sampling, up axis -> 3D plot, views image, label scores, error line).

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
    with warnings.catch_warnings():  # callers launch the page themselves, so its style has to travel with it
        warnings.filterwarnings("ignore", "The parameters have been moved", UserWarning)
        page = gr.Blocks(title="PointCLIP", analytics_enabled=False, css=PAGE_CSS)
    with page as demo:
        gr.Markdown(
            "# PointCLIP: zero-shot 3D classification with CLIP\n"
            f"Drop in a point cloud or a mesh ({' '.join(SUPPORTED_EXTENSIONS)}), type labels. "
            f"Model: `{models.model_name_or_path}`"
        )
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_components(gr, models)
                next_step = gr.Markdown(elem_id="next-step")
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                session = _session_option(gr)
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[inputs[0]], cache_examples=False,
                                label="Examples: click one, then press Classify")  # fmt: skip
            with gr.Column(scale=2):
                outputs = _output_components(gr)
        inputs[0].change(lambda path: NEXT_STEP_HINT if path else "", inputs=inputs[0], outputs=next_step,
                         api_name=False)  # fmt: skip
        button.click(_page_handler(gr, models), inputs=[*inputs, session], outputs=[*outputs, session],
                     api_name="classify").then(lambda: "", outputs=next_step, api_name=False)  # fmt: skip
    return demo


def _input_components(gr, models: DemoModels) -> list:
    cloud = gr.File(label="Point cloud or mesh file", type="filepath", file_types=list(SUPPORTED_EXTENSIONS),
                    elem_id="cloud-file")  # fmt: skip
    labels = gr.Textbox(label="Candidate labels (comma-separated)", value=models.default_labels(), elem_id="labels")
    projection = gr.Dropdown(
        models.projections, value=models.projections[0], label="Projection", interactive=len(models.projections) > 1
    )
    extractor = models.get(models.projections[0]).processor.feature_extractor
    with gr.Row():
        sampling = gr.Dropdown(list(SAMPLING_METHODS), value=extractor.sampling, label="Point sampling")
        up_axis = gr.Dropdown([("format's (z for .las/.laz, else y)", FORMAT_UP_AXIS), *zip(UP_AXES, UP_AXES)],
                              value=extractor.up_axis or FORMAT_UP_AXIS, label="Up axis")  # fmt: skip
    return [cloud, labels, projection, sampling, up_axis]


def _session_option(gr):
    """The session's test-time cache (a `gr.State`, `None` while off) and the checkbox that switches it on or off."""
    session = gr.State(None)
    switch = gr.Checkbox(label="Test-time cache: the clouds classified in this session adapt the scores of the next "
                         "ones (results then depend on the order)", value=False, elem_id="test-time-cache")  # fmt: skip
    switch.change(lambda on: AdaptiveSession() if on else None, inputs=switch, outputs=session, api_name=False)
    return session


def _output_components(gr) -> list:
    error = gr.Markdown(elem_id="error-line")
    scores = gr.Label(label="Labels, ranked", elem_id="scores")  # every label, however many
    with gr.Row():
        plot = gr.Plot(label="The cloud (drag to turn)", elem_id="cloud-plot")
        # The picture carries its own title, so no label floats over its first row of views.
        views = gr.Image(type="pil", format="png", show_label=False, buttons=["download"], elem_id="depth-views")
    return [plot, views, scores, error]


def _page_handler(gr, models: DemoModels):
    def classify(path, labels_text, projection, sampling=None, up_axis=None, session=None):
        result = classify_file(models, path, labels_text, projection, sampling, up_axis, session)
        if result.error is not None:
            return None, None, None, f"**Error:** {result.error}", session
        return point_cloud_figure(result.points), result.views, result.scores, "", session

    return classify


def launch_demo(model_name_or_path: str, port: int | None = None, host: str | None = None, device: str | None = None,
                dtype: str = "auto", sampling: str | None = None, up_axis: str | None = None,
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
        dtype (`str`, *optional*, defaults to `"auto"`):
            See [`DemoModels`].
        sampling (`str`, *optional*), up_axis (`str`, *optional*):
            The point settings the page starts with; default: the model processor's.
        launch_kwargs:
            More `gradio.Blocks.launch` arguments. `max_file_size` (the largest upload) defaults to the readers' cap,
            `POINTCLIP_MAX_CLOUD_BYTES` (1 GiB).
    """
    point_options = {"sampling": sampling, "up_axis": up_axis}
    demo = build_demo(DemoModels(model_name_or_path, device=device, dtype=dtype, point_options=point_options))
    launch_kwargs.setdefault("max_file_size", max_cloud_bytes())
    return demo.launch(server_port=port, server_name=host, **launch_kwargs)


__all__ = ["AdaptiveSession", "DemoModels", "DemoResult", "build_demo", "classify_file", "example_files",
           "launch_demo", "point_cloud_figure"]  # fmt: skip
