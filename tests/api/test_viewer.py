"""The OHIF viewer (``make viewer``) opens a published series from the archive's DICOMweb.

The viewer's ASGI app (OHIF's build at its origin root, ``/dicomweb`` passed to the API
in-process) runs on a free loopback port over the API suite's archive; Debian's chromium,
driven by playwright, opens a study and the viewport's canvas must show an image (not a
blank or uniform canvas). Screenshots go to ``test-artifacts/viewer/`` (and with
``UPDATE_DOC_SCREENSHOTS=1`` to ``docs/img/``).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from imaging_ingest.api import ApiSettings, create_app
from imaging_ingest.api.viewer import viewer_app

from .conftest import ROOT, ApiArchive
from .test_api_tcia_utils import catalog_truth

pytestmark = [pytest.mark.api, pytest.mark.browser]

VIEWER_DIST = ROOT / ".viewer" / "ohif"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "viewer"
DOC_IMAGES = ROOT / "docs" / "img"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def viewer(api_archive: ApiArchive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (VIEWER_DIST / "index.html").is_file():
        pytest.fail(f"the OHIF viewer is not installed at {VIEWER_DIST}: run make viewer (npm, @ohif/app)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make system-deps)")
    import uvicorn

    cache = tmp_path_factory.mktemp("viewer") / "header-cache.sqlite"
    app = create_app(api_archive.settings, ApiSettings(header_cache=cache))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(viewer_app(app, VIEWER_DIST), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the viewer server did not start"
        time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(timeout=15)
    app.state.api.close()


def _shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / name)
    return path


def test_viewer_is_served_with_isolation_headers_and_our_config(viewer: str) -> None:
    index = httpx.get(f"{viewer}/viewer?StudyInstanceUIDs=1.2.3")  # a viewer route: index.html
    assert index.status_code == 200 and "<html" in index.text
    assert index.headers["cross-origin-opener-policy"] == "same-origin"
    assert index.headers["cross-origin-embedder-policy"] == "require-corp"
    config = httpx.get(f"{viewer}/app-config.js").text
    assert "window.location.origin + '/dicomweb'" in config and "cloudfront" not in config
    studies = httpx.get(f"{viewer}/dicomweb/studies")
    assert studies.status_code == 200 and studies.headers["content-type"] == "application/dicom+json"


def test_ohif_opens_a_published_series_and_shows_its_pixels(viewer: str, api_archive: ApiArchive) -> None:
    from playwright.sync_api import sync_playwright

    truth = catalog_truth(api_archive, "demo")
    study = next(t.study for t in truth.values() if t.modality == "CT")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--no-first-run", "--disable-background-networking",
                                          "--enable-unsafe-swiftshader", "--use-angle=swiftshader"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study}")
            canvas = page.locator("canvas.cornerstone-canvas").first
            canvas.wait_for(state="visible", timeout=120_000)
            deadline = time.monotonic() + 60
            while True:  # the first frame arrives after the canvas: wait for pixels, not for load
                skip = page.get_by_text("Skip all")
                if skip.count():
                    skip.first.click()  # the first-visit tour dims the page
                pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
                if (pixels.std() > 5 and pixels.max() > 100) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            _shot(page, "viewer-ohif.png")
        finally:
            browser.close()
    assert pixels.std() > 5 and pixels.max() > 100, (
        f"the viewport's canvas shows an image, not a blank (std {pixels.std():.1f}, max {pixels.max()})")
