"""The Airflow UI as curators use it: trigger a collection DAG with parameters, then read the archive page.

A real Airflow (api-server, scheduler, dag-processor; LocalExecutor on SQLite) with the
simple auth manager (admin and a viewer) and this repository's plugins; a demo archive on
loopback. The browser test drives Debian's chromium through playwright and leaves
screenshots in ``test-artifacts/ops/`` (set ``UPDATE_DOC_SCREENSHOTS=1`` to refresh the
ones in ``docs/img/``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from airflow_stack import ROOT, AirflowStack, running
from demo_archive import DemoArchive, demo_archive

from imaging_ingest.catalog import Catalog

pytestmark = pytest.mark.e2e  # a real Airflow runs the demo DAG (the browser test is marked browser too)

DAG_ID = "ingest__demo"
ARTIFACTS = ROOT / "test-artifacts" / "ops"
DOC_IMAGES = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class UI:
    def __init__(self, stack: AirflowStack, archive: DemoArchive) -> None:
        self.stack = stack
        self.archive = archive

    def counts(self) -> dict[str, int | None]:
        catalog = Catalog.from_url(self.archive.settings.catalog_url)
        try:
            latest = catalog.latest_version("demo")
            items = catalog.quarantine_items("demo")
            return {
                "version": latest.number if latest else None,
                "published": len([i for i in catalog.instances("demo") if i.published_version is not None]),
                "quarantined": len(items),
                "pending_review": len([i for i in items if i.state == "pending"]),
            }
        finally:
            catalog.dispose()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> Iterator[UI]:
    root = tmp_path_factory.mktemp("ui")
    with demo_archive(root / "archive", synth_cache) as archive:
        stack = AirflowStack(
            home=root / "airflow",
            database_url=f"sqlite:///{root / 'airflow' / 'airflow.db'}",
            extra_env=archive.env(),
        )
        components = [["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"]]
        with running(stack, components):
            stack.wait_ready(DAG_ID)
            yield UI(stack, archive)


@pytest.fixture(scope="module")
def published(ui: UI) -> UI:
    """At least one successful run of the demo DAG (the browser test's, or one triggered here)."""
    if ui.counts()["version"] is None:
        run_id = ui.stack.trigger(DAG_ID, {"submission": ui.archive.submission_id})
        run = ui.stack.wait_run(DAG_ID, run_id, timeout=420)
        assert run["state"] == "success", ui.stack.task_states(DAG_ID, run_id)
    return ui


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / name)
    return path


@pytest.mark.browser
def test_curator_triggers_with_params_and_sees_the_new_version(ui: UI) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, submission_id = ui.stack.url, ui.archive.submission_id
    assert ui.counts()["version"] is None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/")
            page.wait_for_selector("input[name=username]")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "admin")
            page.click("button[type=submit]")
            page.wait_for_selector("[data-testid=nav-dags-link]")

            page.goto(f"{url}/dags/{DAG_ID}")
            page.click("[data-testid=trigger-dag-button]")
            field = page.locator("#element_submission")
            field.wait_for()
            options = page.locator("datalist#list_submission option")
            assert submission_id in [options.nth(i).get_attribute("value") for i in range(options.count())]
            field.fill(submission_id)
            assert not page.locator("input[name=element_dry_run]").is_checked()
            assert not page.locator("input[name=element_force]").is_checked()
            _shot(page, "trigger-form.png")
            page.click("[data-testid=trigger-dag-submit]")
            page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+"))
            run_id = unquote(page.url.split("/runs/", 1)[1].split("/")[0].split("?")[0])

            run = ui.stack.wait_run(DAG_ID, run_id, timeout=420)
            assert run["state"] == "success", ui.stack.task_states(DAG_ID, run_id)
            assert run["conf"]["submission"] == submission_id and run["conf"]["dry_run"] is False
            page.reload()
            page.wait_for_selector("text=success")
            _shot(page, "run-success.png")

            counts = ui.counts()
            assert counts["version"] == 1 and counts["published"] > 0 and counts["pending_review"] > 0
            page.goto(f"{url}/plugin/archive")
            row = page.frame_locator("iframe").locator("tr[data-collection=demo]")
            expect(row.locator("[data-field=latest_version]")).to_contain_text("v1")
            expect(row.locator("[data-field=published]")).to_have_text(str(counts["published"]))
            expect(row.locator("[data-field=quarantined]")).to_have_text(str(counts["quarantined"]))
            expect(row.locator("[data-field=pending_review]")).to_have_text(str(counts["pending_review"]))
            expect(row.locator("[data-field=last_run]")).to_contain_text("success")
            _shot(page, "archive-page.png")

            # The quarantine queue: a curator rejects one item with the page's button.
            page.goto(f"{url}/archive/quarantine?collection=demo")
            rows = page.locator("tr[data-item]")
            expect(rows).to_have_count(counts["pending_review"])
            _shot(page, "quarantine-queue.png")
            first = rows.first
            item_id = first.get_attribute("data-item")
            first.locator("input.note").fill("scanned form, text in the pixels")
            first.locator("button[data-decision=reject]").click()
            expect(page.locator("#message")).to_contain_text(f"Item {item_id}: rejected by admin")
            expect(rows).to_have_count(counts["pending_review"] - 1)
        finally:
            browser.close()
    assert ui.counts()["pending_review"] == counts["pending_review"] - 1


def _login(page, url: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=nav-dags-link]")


def _loaded(page, selector: str) -> int:
    """Wait until the image has loaded; its natural width (0 would be a broken image)."""
    image = page.locator(selector)
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return int(image.evaluate("img => img.naturalWidth"))


@pytest.mark.browser
def test_quarantine_queue_shows_a_thumbnail_of_a_quarantined_image(published: UI) -> None:
    """A curator (admin is one here) sees each quarantined image, and opens its preview.

    Runs before the test that approves the last pending item (tests run in file order).
    """
    from playwright.sync_api import expect, sync_playwright

    ui, url = published, published.stack.url
    with ui.stack.client("admin") as admin:
        pending = admin.get("/archive/api/quarantine", params={"collection": "demo"}).json()
        answers = {i["id"]: admin.get(f"/archive/api/quarantine/{i['id']}/thumbnail.png") for i in pending}
    images = [item_id for item_id, answer in answers.items() if answer.status_code == 200]
    assert images, {item_id: answer.status_code for item_id, answer in answers.items()}
    item_id = images[0]
    assert answers[item_id].headers["content-type"] == "image/png"
    assert answers[item_id].headers["cache-control"] == "no-store"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            _login(page, url)
            page.goto(f"{url}/archive/quarantine?collection=demo")
            assert _loaded(page, f"tr[data-item='{item_id}'] img[data-testid=thumbnail]") > 0
            expect(page.locator(f"tr[data-item='{item_id}'] [data-field=rule]")).not_to_be_empty()
            _shot(page, "quarantine-previews.png")

            page.click(f"tr[data-item='{item_id}'] a:has(img)")
            assert _loaded(page, "img[data-testid=preview-image]") > 0
            expect(page.locator("[data-testid=facts] [data-field=path]")).not_to_be_empty()
            expect(page.locator("[data-testid=attributes] tbody tr").first).to_contain_text("(00")
            _shot(page, "quarantine-preview.png")
        finally:
            browser.close()


def test_archive_pages_need_an_airflow_login(ui: UI) -> None:
    base = f"{ui.stack.url}/archive"
    assert httpx.get(f"{base}/", timeout=30).status_code == 401
    assert httpx.get(f"{base}/api/collections", timeout=30).status_code == 401
    assert httpx.post(f"{base}/api/quarantine/1/approve", json={}, timeout=30).status_code == 401
    assert httpx.get(f"{base}/api/quarantine/1/thumbnail.png", timeout=30).status_code == 401
    assert httpx.get(f"{base}/preview", params={"item": 1}, timeout=30).status_code == 401
    assert httpx.post(f"{base}/api/quarantine/1/series/reject", json={}, timeout=30).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.get(f"{base}/api/collections", headers=bad, timeout=30).status_code in (401, 403)
    with ui.stack.client("viewer") as viewer:
        page = viewer.get("/archive/")
        assert page.status_code == 200 and "Collections" in page.text


def test_only_curators_decide_on_quarantined_files(published: UI) -> None:
    ui = published
    with ui.stack.client("viewer") as viewer, ui.stack.client("admin") as admin:
        queue = viewer.get("/archive/api/quarantine", params={"collection": "demo"})
        assert queue.status_code == 200 and queue.json(), "a viewer may read the queue"
        item = queue.json()[0]
        assert set(item) >= {"id", "submission", "file_id", "stage", "reason"} and "source_path" not in item
        page = viewer.get("/archive/quarantine")
        assert "view only" in page.text and 'data-decision="approve"' not in page.text

        denied = viewer.post(f"/archive/api/quarantine/{item['id']}/approve", json={"note": "looks fine"})
        assert denied.status_code == 403
        form = admin.post(f"/archive/api/quarantine/{item['id']}/approve", data={"note": "x"})
        assert form.status_code == 415  # only JSON: a cross-site form cannot decide for a logged-in curator
        before = {c["id"]: c for c in admin.get("/archive/api/collections").json()}["demo"]
        approved = admin.post(f"/archive/api/quarantine/{item['id']}/approve", json={"note": "no PHI on review"})
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "approved" and approved.json()["decided_by"] == "admin"
        after = {c["id"]: c for c in admin.get("/archive/api/collections").json()}["demo"]
        assert after["pending_review"] == before["pending_review"] - 1
        assert after["quarantined"] == before["quarantined"]
        conflict = admin.post(f"/archive/api/quarantine/{item['id']}/reject", json={})
        assert conflict.status_code == 409 and "final" in conflict.json()["detail"]
        assert admin.post("/archive/api/quarantine/987654/approve", json={}).status_code == 404

    catalog = Catalog.from_url(ui.archive.settings.catalog_url)
    try:
        (row,) = [i for i in catalog.quarantine_items("demo") if i.id == item["id"]]
        assert (row.state, row.decided_by) == ("approved", "admin")
        events = [e for e in catalog.audit_events() if e.event_type == "quarantine-review" and e.outcome == "approved"]
        assert [e.detail for e in events] == ["no PHI on review"]
    finally:
        catalog.dispose()

