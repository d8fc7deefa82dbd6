"""The public catalogue page: collections with their citation, filters, links, restricted ones hidden.

HTTP checks run against the API suite's server; the browser test drives Debian's chromium
with JavaScript disabled (the page must not need it) and the keyboard, and leaves a
screenshot in ``test-artifacts/catalogue/`` (``UPDATE_DOC_SCREENSHOTS=1``: ``docs/img/``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from .conftest import PASSWORDS, ROOT, ApiArchive, token_for
from .test_api_tcia_utils import catalog_truth

pytestmark = pytest.mark.api

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "catalogue"
DOC_IMAGES = ROOT / "docs" / "img"


def test_the_page_lists_collections_with_citation_counts_and_versions(api_server: str, api_archive: ApiArchive) -> None:
    page = httpx.get(f"{api_server}/catalogue")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    release = api_archive.store.get_json("public", "demo/versions/2/release.json")
    html = page.text
    assert release["citation"] and release["citation"] in html
    assert f"https://doi.org/{release['doi']}" in html
    assert "Creative Commons Attribution 4.0 International" in html
    assert "Version history" in html and ">1</th>" in html and ">2</th>" in html
    assert "Synthetic CT, MR and RT structure sets" in html  # the description, from datacite.json
    assert "demo_restricted" not in html, "a restricted collection is not even named without a grant"
    assert "<script" not in html.lower()


def test_filters_links_and_manifest(api_server: str, api_archive: ApiArchive) -> None:
    truth = catalog_truth(api_archive, "demo")
    mr = {u for u, t in truth.items() if t.modality == "MR"}
    page = httpx.get(f"{api_server}/catalogue", params={"modality": "MR"}).text
    assert f"{len(mr)} series match" in page
    assert all(f"getImage?SeriesInstanceUID={u}" in page for u in mr)
    assert all(u not in page for u, t in truth.items() if t.modality != "MR")
    patient = next(iter(truth.values())).patient
    by_patient = httpx.get(f"{api_server}/catalogue", params={"patient": patient.lower()}).text
    assert f"{sum(1 for t in truth.values() if t.patient == patient)} series match" in by_patient
    manifest = httpx.get(f"{api_server}/catalogue/manifest.tcia", params={"modality": "MR"})
    lines = manifest.text.splitlines()
    assert lines[5] == "ListOfSeriesToDownload=" and set(lines[6:]) == mr
    chest = {u for u, t in truth.items() if (t.body_part or "").upper() == "CHEST"}
    assert f"{len(chest)} series match" in httpx.get(f"{api_server}/catalogue", params={"body_part": "CHEST"}).text


def test_restricted_collections_only_for_their_token_holders(api_server: str) -> None:
    alice = httpx.get(f"{api_server}/catalogue", headers={"Authorization": f"Bearer {token_for(api_server, 'alice')}"})
    assert "Restricted test collection RSTA" in alice.text and "demo_restricted_b" not in alice.text
    with httpx.Client(base_url=api_server) as browser:  # the page's own sign-in form (a cookie)
        signed = browser.post("/catalogue/sign-in", data={"username": "bob", "password": PASSWORDS["bob"]})
        assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
        page = browser.get("/catalogue").text
        assert "demo_restricted_b" in page and "(demo_restricted)" not in page
        browser.post("/catalogue/sign-out")
        assert "demo_restricted_b" not in browser.get("/catalogue").text
    wrong = httpx.post(f"{api_server}/catalogue/sign-in", data={"username": "bob", "password": "wrong"})
    assert wrong.status_code == 303 and "set-cookie" not in wrong.headers


@pytest.mark.browser
def test_the_page_works_without_javascript_and_with_the_keyboard(api_server: str, api_archive: ApiArchive) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make system-deps)")
    release = api_archive.store.get_json("public", "demo/versions/2/release.json")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--no-first-run"])
        try:
            page = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{api_server}/catalogue")
            assert page.get_by_role("heading", name="Demo Synthetic Imaging Collection").is_visible()
            assert page.get_by_text(release["citation"]).is_visible()
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to the collections"
            page.get_by_label("Modality").select_option("MR")
            page.get_by_role("button", name="Filter").focus()
            page.keyboard.press("Enter")  # the keyboard submits the form: no script involved
            page.wait_for_url("**/catalogue?**modality=MR**")
            assert page.get_by_role("link", name="Download").count() > 0
            page.goto(f"{api_server}/catalogue")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "catalogue.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
                DOC_IMAGES.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, DOC_IMAGES / "catalogue.png")
        finally:
            browser.close()
