"""The Gradio demo, served on 127.0.0.1 with the tiny CLIP: its endpoint through `gradio_client`, and the page itself
in a real headless Chromium."""

import importlib.util
import os
import runpy
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import SpaceCard
from PIL import Image

from pointclip_hf import PointCLIPModel, render_views
from pointclip_hf.cli import main as cli_main
from pointclip_hf.io import SUPPORTED_EXTENSIONS
from pointclip_hf.model.feature_extraction_pointclip import PointCLIPFeatureExtractor
from pointclip_hf.visualization import projection_views_image

gradio = pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client comes with the demo extra")

from pointclip_hf.demo import DemoModels, build_demo, classify_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MUG = str(EXAMPLES / "mug.npy")
TEDDY_BEAR = str(EXAMPLES / "teddy_bear.npy")  # taller than wide: the 3D view must not crop its head
LABELS = "cup, table, teddy bear, lamp"
# Without these, Chromium keeps retrying connections that this offline machine refuses, slowing the page under load.
CHROMIUM_OFFLINE_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync"]  # fmt: skip
BROWSER_TIMEOUT_MS = 120_000  # generous: a loaded 2-core CI machine starts Chromium and Gradio's page slowly


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_models(tiny_clip_dir):
    return DemoModels(str(tiny_clip_dir), dtype="float32")  # as the library's default, which the tests compare with


@pytest.fixture(scope="module")
def demo_url(demo_models):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = build_demo(demo_models, examples=[MUG, TEDDY_BEAR])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(demo_url):
    return gradio_client.Client(demo_url, verbose=False)


def _classify(client, path, labels=LABELS, projection="pointclip_v1"):
    return client.predict(gradio_client.handle_file(path), labels, projection, api_name="/classify")


@pytest.mark.parametrize("projection", ["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"])
def test_endpoint_scores_and_views_match_the_library(client, tiny_clip_dir, projection):
    plot, views_path, scores, error = _classify(client, MUG, projection=projection)
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style=projection)
    expected = model.classify(MUG, [label.strip() for label in LABELS.split(",")])
    assert error == ""
    assert scores["label"] == expected[0]["label"]
    confidences = {item["label"]: item["confidence"] for item in scores["confidences"]}
    assert confidences == pytest.approx({p["label"]: p["score"] for p in expected}, abs=1e-6)
    processor = PointCLIPFeatureExtractor(projection_style=projection)
    expected_grid = projection_views_image(render_views(processor.prepare_points(MUG), projection)[0], projection)
    assert np.array_equal(np.asarray(Image.open(views_path).convert("L")), np.asarray(expected_grid))
    assert plot["type"] == "plotly" and '"scatter3d"' in plot["plot"]


def test_bad_file_shows_the_line_the_cli_prints(client, tiny_clip_dir, tmp_path, monkeypatch, capsys):
    name = "broken.ply"
    (tmp_path / name).write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n0 0 0\n")
    plot, views, scores, error = _classify(client, str(tmp_path / name))
    assert plot is None and views is None and not scores
    monkeypatch.chdir(tmp_path)
    assert cli_main(["classify", name, "--labels", LABELS, "--model", str(tiny_clip_dir)]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert error.startswith("**Error:** ") and name in error
    assert cli_line.endswith("error: " + error.removeprefix("**Error:** "))


def test_a_file_of_an_unread_type_is_refused_naming_the_types(client, tmp_path):
    (tmp_path / "cloud.foo").write_text("0 0 0\n")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"Invalid file type.*\.ply"):
        _classify(client, str(tmp_path / "cloud.foo"))


@pytest.mark.parametrize("labels, message", [("cup, cup", "duplicates"), (" , ", "label list is empty")])
def test_bad_labels_show_in_the_page(client, labels, message):
    _, _, scores, error = _classify(client, MUG, labels=labels)
    assert not scores and message in error


def test_missing_file_and_unknown_projection_are_named(demo_models):
    assert demo_models.projections == ["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"]  # the ones that classify
    assert "No point-cloud file" in classify_file(demo_models, None, LABELS, "pointclip_v1").error
    assert "not 'pointclip_v3'" in classify_file(demo_models, MUG, LABELS, "pointclip_v3").error


def test_sampling_and_up_axis_choices_change_what_the_model_sees(demo_models):
    default = classify_file(demo_models, MUG, LABELS, "pointclip_v1")
    chosen = classify_file(demo_models, MUG, LABELS, "pointclip_v1", sampling="first", up_axis="z")
    expected = PointCLIPFeatureExtractor(sampling="first", up_axis="z").prepare_points(MUG)[0].numpy()
    assert np.array_equal(chosen.points, expected)
    assert np.array_equal(default.points, PointCLIPFeatureExtractor().prepare_points(MUG)[0].numpy())
    assert chosen.scores != default.scores
    by_format = classify_file(demo_models, MUG, LABELS, "pointclip_v1", up_axis="format")
    assert np.array_equal(by_format.points, default.points)


def test_a_las_upload_is_turned_by_its_format_up_axis(demo_models, tmp_path):
    """The demo reads an upload once and passes the array on: the format's z-up still comes from the file name."""
    laspy = pytest.importorskip("laspy", reason="laspy (the las and test extras)")
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = np.load(MUG)[:, :3].astype(np.float64).T
    las.write(str(tmp_path / "mug.las"))
    by_format = classify_file(demo_models, str(tmp_path / "mug.las"), LABELS, "pointclip_v1", up_axis="format")
    z_up = PointCLIPFeatureExtractor(up_axis="z").prepare_points(str(tmp_path / "mug.las"))[0].numpy()
    assert np.array_equal(by_format.points, z_up)
    assert np.array_equal(classify_file(demo_models, str(tmp_path / "mug.las"), LABELS, "pointclip_v1").points, z_up)


def test_a_saved_pointclip_model_offers_only_its_projection(tiny_clip_dir, tmp_path):
    PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2").save_pretrained(tmp_path)
    models = DemoModels(str(tmp_path))
    assert models.projections == ["pointclip_v2"]
    assert models.get("pointclip_v2").config.projection_style == "pointclip_v2"
    assert "not 'pointclip_v1'" in classify_file(models, MUG, LABELS, "pointclip_v1").error


def test_demo_command_without_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "gradio", None)
    assert cli_main(["demo", "--model", "unused"]) == 2
    assert 'pip install "pointclip_hf[demo]"' in capsys.readouterr().err


def test_space_app_builds_the_demo_from_its_metadata(tiny_clip_dir, monkeypatch):
    space = EXAMPLES / "space"
    card = SpaceCard.load(space / "README.md").data
    assert card.sdk == "gradio" and (space / card.app_file).is_file()
    assert card.sdk_version.split(".")[0] == gradio.__version__.split(".")[0]
    requirements = (space / "requirements.txt").read_text().split()
    assert any(line.startswith("./pointclip_hf-") and line.endswith(".whl[demo,las,pcd]") for line in requirements)
    monkeypatch.setenv("POINTCLIP_MODEL", str(tiny_clip_dir))
    demo = runpy.run_path(str(space / card.app_file))["demo"]
    assert isinstance(demo, gradio.Blocks)
    assert "/classify" in [f"/{dependency.api_name}" for dependency in demo.fns.values()]


def _chromium() -> str | None:
    return next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)


def _browser_or_skip():
    """Playwright's `sync_playwright`, or a skip (a failure in CI's browser stage) when it or Chromium is missing."""
    if os.environ.get("POINTCLIP_REQUIRE_BROWSER"):  # CI's browser stage: a missing browser is a failure there
        assert importlib.util.find_spec("playwright") and _chromium(), "Playwright and Chromium are required"
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (test extra)")
    if _chromium() is None:
        pytest.skip("no Chromium browser installed (apt-get install chromium)")
    return playwright.sync_playwright


def test_page_in_a_headless_browser(demo_url, tiny_clip_dir):
    sync_playwright = _browser_or_skip()
    expected = PointCLIPModel.from_pretrained(tiny_clip_dir).classify(MUG, LABELS)[0]["label"]
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=_chromium(), args=CHROMIUM_OFFLINE_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(demo_url)
            page.locator("#cloud-file input[type=file]").set_input_files(MUG)
            page.locator("#cloud-file").get_by_text("mug.npy").wait_for()
            page.locator("#labels textarea").fill(LABELS)
            page.locator("#classify-button").click()
            top_label = page.locator('#scores [data-testid="label-output-value"]')
            top_label.wait_for()
            assert top_label.inner_text().strip() == expected
        finally:
            browser.close()


TWELVE_LABELS = ", ".join(f"thing {index}" for index in range(12))
# The plotted ranges and the plotted points, read from Plotly's own figure object in the page.
PLOT_EXTENT_JS = """plot => {
    const scene = plot._fullLayout.scene, trace = plot._fullData[0];
    const extent = values => [Math.min(...values), Math.max(...values)];
    return ["x", "y", "z"].map(axis => ({range: scene[axis + "axis"].range, data: extent(trace[axis])}));
}"""
# Where the views picture is drawn, against its own pixel size and the box that holds it.
VIEWS_BOX_JS = """image => {
    const box = image.getBoundingClientRect(), frame = image.closest("#depth-views").getBoundingClientRect();
    return {natural: image.naturalHeight / image.naturalWidth, shown: box.height / box.width, bottom: box.bottom,
            right: box.right, frame_bottom: frame.bottom, frame_right: frame.right, page: window.innerWidth};
}"""


def _browser_page(browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    return page


def _check_the_views_fit(page):
    views = page.locator("#depth-views img")
    views.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=views.element_handle())
    box = views.evaluate(VIEWS_BOX_JS)
    assert box["shown"] == pytest.approx(box["natural"], rel=0.02)  # both rows, neither squeezed nor cut
    assert box["bottom"] <= box["frame_bottom"] + 1 and box["right"] <= min(box["frame_right"], box["page"]) + 1
    labels = page.locator('#depth-views [data-testid="block-label"]').all()
    assert not any(label.is_visible() for label in labels)  # nothing over the first row


@pytest.mark.parametrize("width", [1280, 390])  # a desktop and a phone
def test_page_at_desktop_and_phone_width(demo_url, width):
    """The example hint, the file filter, a tall cloud uncropped, both rows of views, all 12 scores, a styled error."""
    sync_playwright = _browser_or_skip()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=_chromium(), args=CHROMIUM_OFFLINE_ARGS)
        try:
            page = _browser_page(browser, width)
            page.goto(demo_url)
            accepted = [
                kind.strip() for kind in page.locator("#cloud-file input[type=file]").get_attribute("accept").split(",")
            ]
            assert sorted(accepted) == sorted(SUPPORTED_EXTENSIONS)
            page.get_by_text("teddy_bear.npy").first.click()  # the example
            hint = page.locator("#next-step").get_by_text("Classify")
            hint.wait_for()
            page.locator("#labels textarea").fill(TWELVE_LABELS)
            page.locator("#classify-button").click()
            page.locator('#scores [data-testid="label-output-value"]').wait_for()
            hint.wait_for(state="detached")
            for index in range(12):
                assert page.locator("#scores").get_by_text(f"thing {index}", exact=True).count() >= 1
            plot = page.locator("#cloud-plot .js-plotly-plot")
            plot.wait_for()
            for axis in plot.evaluate(PLOT_EXTENT_JS):
                assert axis["range"][0] < axis["data"][0] and axis["data"][1] < axis["range"][1]
            _check_the_views_fit(page)
            page.locator("#labels textarea").fill("cup, cup")
            page.locator("#classify-button").click()
            error = page.locator("#error-line p")
            error.get_by_text("duplicates").wait_for()
            style = error.evaluate("line => getComputedStyle(line)")
            assert style["backgroundColor"] not in ("", "rgba(0, 0, 0, 0)") and style["borderLeftWidth"] != "0px"
        finally:
            browser.close()
