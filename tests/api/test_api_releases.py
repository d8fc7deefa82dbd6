"""What a version contains, asked of the catalog's tables; broken releases skipped; no start-up index."""

from __future__ import annotations

import time
from typing import Any

import pytest

from imaging_ingest.api.headers import HeaderCache
from imaging_ingest.api.queries import connect
from imaging_ingest.api.releases import Archive

from .conftest import ApiArchive

pytestmark = pytest.mark.api


def _archive(api_archive: ApiArchive, release_exists: Any) -> Archive:
    headers = HeaderCache(None, lambda tier, key, length: b"", workers=1)  # header fields are not the point here
    return Archive(connect(api_archive.settings.catalog_url), release_exists, headers, refresh_interval_s=0)


def _exists(api_archive: ApiArchive) -> Any:
    return lambda tier, key: api_archive.store.head(tier, key) is not None


def test_a_version_is_exactly_its_release(api_archive: ApiArchive) -> None:
    archive = _archive(api_archive, _exists(api_archive))
    for number in (1, 2):
        view = archive.pinned("demo", number)
        assert view is not None and view.version == number
        release = api_archive.store.get_json("public", f"demo/versions/{number}/release.json")
        served = {i.key: (i.size, i.md5) for s in view.series.values() for i in s.instances}
        dicom = [o for o in release["objects"] if o.get("kind", "dicom") == "dicom"]  # tables are not NBIA series
        assert served == {o["key"]: (o["size"], o["md5"]) for o in dicom}
        assert sum(len(p.studies) for p in view.patients.values()) == len(view.studies)
    assert archive.pinned("demo", 3) is None and archive.pinned("nothing", 1) is None
    archive.engine.dispose()


def test_lookups_by_uid_need_no_listing(api_archive: ApiArchive) -> None:
    """A series, study or patient found by its UID is one indexed query: no version is joined whole."""
    listed = _archive(api_archive, _exists(api_archive)).pinned("demo", 2)
    assert listed is not None
    some = next(iter(listed.series.values()))
    archive = _archive(api_archive, _exists(api_archive))
    view = archive.pinned("demo", 2)
    assert view is not None
    started = time.perf_counter()
    series = view.series.get(some.uid)
    assert series is not None and [i.key for i in series.instances] == [i.key for i in some.instances]
    assert series.image_count == some.image_count and series.total_bytes == some.total_bytes
    study = view.studies[some.study_uid]
    assert {s.uid for s in study.series} == {s.uid for s in listed.studies[some.study_uid].series}
    assert view.patients[some.patient_id].id == some.patient_id
    assert [p.id for p in view.find_patients_ignoring_case(some.patient_id.lower())] == [some.patient_id]
    assert view.series.get("1.2.3.4.5") is None
    assert view.listed is None, "lookups did not list the whole version"
    assert time.perf_counter() - started < 1.0
    archive.engine.dispose()
    listed.engine.dispose()


def test_an_unreadable_release_falls_back_to_the_previous_version(api_archive: ApiArchive) -> None:
    def broken(tier: str, key: str) -> bool:
        if key == "demo/versions/2/release.json":
            raise OSError("release unreadable")
        return api_archive.store.head(tier, key) is not None

    archive = _archive(api_archive, broken)
    latest = {v.id: v.version for v in archive.latest()}
    assert latest == {"demo": 1, "demo_restricted": 1, "demo_restricted_b": 1}
    archive.engine.dispose()
