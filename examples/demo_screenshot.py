"""Take a screenshot of the demo in headless Chromium: upload a cloud, press Classify, capture the page.

    python examples/demo_screenshot.py --model openai/clip-vit-base-patch16 --out examples/demo_screenshot.png

Needs the demo extra, Playwright (`pip install playwright`) and a Chromium (`apt-get install chromium`); the browser
is given by path, so nothing is downloaded. The PNG is reduced to 256 colours to stay small.
"""

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from pointclip_hf.demo import DemoModels, build_demo, example_files

EXAMPLES = Path(__file__).resolve().parent


def capture(url: str, cloud: str, labels: str | None, browser_path: str) -> bytes:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=browser_path)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url)
        page.locator("#cloud-file input[type=file]").set_input_files(cloud)
        page.locator("#cloud-file").get_by_text(Path(cloud).name).wait_for(timeout=30_000)
        if labels:
            page.locator("#labels textarea").fill(labels)
        page.locator("#classify-button").click()
        page.locator('#scores [data-testid="label-output-value"]').wait_for(timeout=120_000)
        page.wait_for_timeout(2_000)  # let the 3D plot finish drawing
        screenshot = page.screenshot(full_page=True)
        browser.close()
    return screenshot


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openai/clip-vit-base-patch16")
    parser.add_argument("--cloud", default=str(EXAMPLES / "mug.npy"))
    parser.add_argument("--labels", help="candidate labels typed into the page (default: the page's own)")
    parser.add_argument("--out", default=str(EXAMPLES / "demo_screenshot.png"))
    parser.add_argument("--browser", default=shutil.which("chromium"), help="path of the Chromium executable")
    args = parser.parse_args()
    demo = build_demo(DemoModels(args.model), examples=example_files(EXAMPLES))
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        screenshot = capture(url, args.cloud, args.labels, args.browser)
    finally:
        demo.close()
    image = Image.open(io.BytesIO(screenshot)).convert("RGB").quantize(colors=256)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB, {image.width}x{image.height})")


if __name__ == "__main__":
    main()
