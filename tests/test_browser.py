"""The page in a real browser: Debian's headless Chromium, driven by selenium's chromedriver,
against the service on 127.0.0.1 (uvicorn in a thread of this process).

Skipped, with the reason, where chromium or chromedriver is missing; .ci/run installs both.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_serve import write_photo

from segnet import Segmenter
from segnet.serve import ServeSettings, create_app
from segnet.serve.server import background_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, states: tuple[str, ...], seconds: float = 30) -> str:
    """Wait for the page's ``body[data-state]`` (set by app.js) to reach one of ``states``."""
    deadline = time.monotonic() + seconds
    while (state := driver.execute_script("return document.body.dataset.state")) not in states:
        assert time.monotonic() < deadline, f"page state {state!r}, waited for {states}"
        time.sleep(0.05)
    return state


def test_page_segments_a_picked_file_shows_legend_overlay_and_downloads_the_png(
    browser, checkpoint, tmp_path
):
    seg = Segmenter.load(checkpoint, device="cpu")
    photo = write_photo(tmp_path / "photo.jpg", 64, 48, seed=3)
    labels = seg.predict(photo)
    with background_server(create_app(seg, ServeSettings())) as url:
        browser.get(f"{url}/")
        wait_for(browser, ("ready",))
        browser.find_element(By.ID, "file").send_keys(str(photo))
        assert wait_for(browser, ("done", "error")) == "done", browser.find_element(
            By.ID, "error"
        ).text

        # Legend: every class present, with its pixel share, largest first.
        rows = browser.find_elements(By.CSS_SELECTOR, "#legend li")
        shown = {
            row.get_attribute("data-class"): float(row.get_attribute("data-share")) for row in rows
        }
        counts = np.bincount(labels.ravel(), minlength=len(seg.class_names))
        expected = {seg.class_names[i]: counts[i] / labels.size for i in np.flatnonzero(counts)}
        assert shown.keys() == expected.keys() and len(shown) > 1
        for name, share in expected.items():
            assert shown[name] == pytest.approx(share, abs=1e-6)
        assert list(shown.values()) == sorted(shown.values(), reverse=True)

        # The overlay: at full opacity each canvas pixel is its class colour.
        browser.execute_script(
            "const s = document.getElementById('opacity'); s.value = 100;"
            "s.dispatchEvent(new Event('input'));"
        )
        canvas = browser.execute_script(
            "const c = document.getElementById('view');"
            "return [c.width, c.height, Array.from(c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data)];"
        )
        width, height, rgba = canvas
        assert (width, height) == (64, 48)
        drawn = np.array(rgba, dtype=np.uint8).reshape(48, 64, 4)[..., :3]
        assert np.array_equal(drawn, np.array(seg.palette, dtype=np.uint8)[labels])

        # The label PNG downloads as the server's bytes (infer's mask less its source chunk).
        browser.find_element(By.ID, "dl-png").click()
        target = browser.downloads / "photo.png"
        deadline = time.monotonic() + 20
        while not target.is_file():
            assert time.monotonic() < deadline, (
                f"no download in {list(browser.downloads.iterdir())}"
            )
            time.sleep(0.05)
        assert target.read_bytes() == seg.mask_png(labels)
        assert np.array_equal(np.asarray(Image.open(target)), labels)

        # An API error is shown in the page, not swallowed.
        text = tmp_path / "notes.jpg"
        text.write_text("not a picture")
        browser.find_element(By.ID, "file").send_keys(str(text))
        assert wait_for(browser, ("error",)) == "error"
        message = browser.find_element(By.ID, "error").text
        assert message.startswith("415: not an image"), message


def test_the_page_needs_no_network_beyond_its_server():
    """Everything the page loads is on its own server: no CDN, no external font or script."""
    static = Path(__file__).resolve().parents[1] / "segnet" / "serve" / "static"
    for page in static.iterdir():
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, page.name
