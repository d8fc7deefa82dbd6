"""The published-version index: what a version contains, new versions built aside, broken releases skipped."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from imaging_ingest.api.headers import HeaderCache
from imaging_ingest.api.queries import connect
from imaging_ingest.api.releases import Archive

from .conftest import ApiArchive

pytestmark = pytest.mark.api


def _archive(api_archive: ApiArchive, read_release: Any) -> Archive:
    headers = HeaderCache(None, lambda tier, key, length: b"", workers=1)  # header fields are not the point here
    return Archive(connect(api_archive.settings.catalog_url), read_release, headers, refresh_interval_s=0)


def test_a_version_is_exactly_its_release(api_archive: ApiArchive) -> None:
    archive = _archive(api_archive, api_archive.store.get_json)
    for number in (1, 2):
        view = archive.pinned("demo", number)
        assert view is not None and view.version == number and view.skipped == 0
        release = api_archive.store.get_json("public", f"demo/versions/{number}/release.json")
        served = {i.key: (i.size, i.md5) for s in view.series.values() for i in s.instances}
        dicom = [o for o in release["objects"] if o.get("kind", "dicom") == "dicom"]  # tables are not NBIA series
        assert served == {o["key"]: (o["size"], o["md5"]) for o in dicom}
        assert sum(len(p.studies) for p in view.patients.values()) == len(view.studies)
    assert archive.pinned("demo", 3) is None and archive.pinned("nothing", 1) is None
    archive.engine.dispose()


def test_a_new_version_is_built_aside_while_the_previous_one_is_served(api_archive: ApiArchive) -> None:
    gate = threading.Event()

    def slow_release(tier: str, key: str) -> Any:
        if key == "demo/versions/2/release.json":
            assert gate.wait(30)
        return api_archive.store.get_json(tier, key)

    archive = _archive(api_archive, slow_release)
    assert archive.pinned("demo", 1) is not None  # version 1 is being served
    demo = next(v for v in archive.latest() if v.id == "demo")
    assert demo.version == 1, "version 2 is still being built: version 1 is served meanwhile"
    gate.set()
    deadline = time.monotonic() + 30
    while next(v for v in archive.latest() if v.id == "demo").version != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    archive.engine.dispose()


def test_an_unreadable_release_falls_back_to_the_previous_version(api_archive: ApiArchive) -> None:
    def broken(tier: str, key: str) -> Any:
        if key == "demo/versions/2/release.json":
            raise OSError("release unreadable")
        return api_archive.store.get_json(tier, key)

    archive = _archive(api_archive, broken)
    latest = {v.id: v.version for v in archive.latest()}
    assert latest == {"demo": 1, "demo_restricted": 1, "demo_restricted_b": 1}
    archive.engine.dispose()
