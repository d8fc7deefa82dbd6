"""Versions: the latest is served by default; a named version is a fixed snapshot at its own base URL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import ApiArchive

pytestmark = pytest.mark.api


def _release_series(archive: ApiArchive, version: int) -> set[str]:
    """Series UIDs of a demo release, read from its release.json and the catalog."""
    keys = {o["key"] for o in archive.store.get_json("public", f"demo/versions/{version}/release.json")["objects"]}
    return {i.series.uid for i in _instances(archive) if i.object_key in keys}


def _instances(archive: ApiArchive) -> list[Any]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session, joinedload

    from imaging_ingest.catalog.models import Instance

    with Session(archive.catalog.engine) as s:
        return list(s.scalars(select(Instance).options(joinedload(Instance.series))
                              .where(Instance.collection_id == "demo")))


def test_collections_index_lists_versions(api_server: str) -> None:
    listing = httpx.get(f"{api_server}/collections").json()
    assert [c["collection"] for c in listing] == ["demo"]
    demo = listing[0]
    assert demo["latest_version"] == 2 and [v["version"] for v in demo["versions"]] == [1, 2]
    assert demo["versions"][0]["base_url"].endswith("/collections/demo/versions/1/nbia-api/services/v4/")


def test_latest_by_default_and_a_pinned_version(api_server: str, api_archive: ApiArchive, nbia: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2 = _release_series(api_archive, 1), _release_series(api_archive, 2)
    assert v1 < v2, "version 2 adds the second submission's series"
    assert {s["SeriesInstanceUID"] for s in nbia.getSeries(collection="demo")} == v2

    pinned = f"{api_server}/collections/demo/versions/1/nbia-api/services/v4/"
    monkeypatch.setattr(nbia, "setApiUrl", lambda endpoint, api_url="": pinned)
    assert {s["SeriesInstanceUID"] for s in nbia.getSeries(collection="demo")} == v1
    assert nbia.getCollections() == [{"Collection": "demo"}]
    later = sorted(v2 - v1)[0]
    assert nbia.getSeries(seriesUid=later) is None, "a series added in version 2 is not in version 1"
    assert httpx.get(f"{pinned}getImage", params={"SeriesInstanceUID": later}).status_code == 404
    assert httpx.get(f"{pinned}getImage", params={"SeriesInstanceUID": sorted(v1)[0]}).status_code == 200


def test_unknown_versions_are_not_found(api_server: str) -> None:
    for path in ("collections/demo/versions/3", "collections/nothing/versions/1"):
        answer = httpx.get(f"{api_server}/{path}/nbia-api/services/v4/getSeries")
        assert answer.status_code == 404 and answer.json()["detail"] == "No such published collection version."
    assert httpx.get(f"{api_server}/collections/demo/versions/0/nbia-api/services/v4/getSeries").status_code == 400
