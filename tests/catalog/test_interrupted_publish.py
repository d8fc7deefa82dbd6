"""A publication that dies half-way leaves no visible version, and its rerun completes it (both backends)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.publish.versions import Archive, release_objects, withdraw_series
from imaging_ingest.storage.objects import ObjectStore

from .conftest import SECRET, catalog_url_for, demo_config_for, make_settings, object_versions


class Killed(Exception):
    pass


def _up_to_register(ingest: Ingest) -> str:
    sub = ingest.claim().submission_id
    ingest.stage_raw(sub)
    ingest.inventory(sub)
    results = [ingest.deidentify(sub, key).manifest for key in ingest.plan(sub)]
    ingest.screen(sub, [r for r in results if r])
    ingest.verify(sub)
    ingest.register(sub)
    return sub


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_publish_is_invisible_and_its_rerun_completes_it(
    backend: str, tmp_path: Path, s3_endpoint: str, synth_cache: Path, second_submission: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop = tmp_path / "drop"
    shutil.copytree(synth_cache, drop / "batch-1")
    (drop / "batch-1" / "READY").write_text("complete\n")
    with catalog_url_for(backend, tmp_path) as url:
        settings = make_settings(tmp_path / "home", url, s3_endpoint)
        store, catalog = ObjectStore(settings), Catalog.from_url(url)
        config = demo_config_for(drop)
        ingest = Ingest(config, settings, secret=SECRET, catalog=catalog, store=store)

        # 1. Killed just before release.json: objects and metadata are there, no version is.
        sub1 = _up_to_register(ingest)
        real_put_json = store.put_json

        def dies_on_release(tier: str, key: str, document: object) -> None:
            if key.endswith("/release.json"):
                raise Killed(key)
            real_put_json(tier, key, document)

        monkeypatch.setattr(store, "put_json", dies_on_release)
        with pytest.raises(Killed):
            ingest.publish(sub1)
        monkeypatch.setattr(store, "put_json", real_put_json)
        assert store.head("public", "demo/versions/1/release.json") is None
        assert store.head("public", "demo/versions/1/datacite.json") is not None
        assert catalog.versions("demo") == []
        first_try = object_versions(store, "public", "demo/", exclude="/versions/")
        assert first_try  # the objects were copied before it died

        assert ingest.publish(sub1).counts["version"] == 1
        assert object_versions(store, "public", "demo/", exclude="/versions/") == first_try  # none copied twice
        assert object_versions(store, "public", "demo/versions/1/release.json")
        v1 = release_objects(store.get_json("public", "demo/versions/1/release.json"))
        assert set(v1) == set(first_try)

        # 2. Killed after release.json, before the catalog heard of it; a withdrawal comes next.
        shutil.copytree(second_submission, drop / "batch-2")
        (drop / "batch-2" / "READY").write_text("complete\n")
        sub2 = _up_to_register(ingest)
        real_apply = catalog.apply_release
        monkeypatch.setattr(catalog, "apply_release", lambda *a, **k: (_ for _ in ()).throw(Killed("catalog")))
        with pytest.raises(Killed):
            ingest.publish(sub2)
        monkeypatch.setattr(catalog, "apply_release", real_apply)
        assert store.head("public", "demo/versions/2/release.json") is not None
        assert [v.number for v in catalog.versions("demo")] == [1]
        v2 = release_objects(store.get_json("public", "demo/versions/2/release.json"))

        series = sorted({e["series_uid"] for e in v1.values()})[0]
        outcome = withdraw_series(Archive(config, store, catalog, "public"), [series], "consent withdrawn")
        assert outcome.version == 3  # version 2, found in storage, was recorded first
        versions = catalog.versions("demo")
        assert [(v.number, v.kind) for v in versions] == [(1, "submission"), (2, "submission"), (3, "withdrawal")]
        assert "interrupted publication" in versions[1].reason and versions[1].submission_id == sub2
        assert {m.key for m in catalog.members("demo", 2)} == set(v2)
        v3 = release_objects(store.get_json("public", "demo/versions/3/release.json"))
        assert set(v3) == {k for k, e in v2.items() if e["series_uid"] != series}

        # The interrupted submission's rerun finds its objects published: no new version.
        result = ingest.publish(sub2)
        assert result.counts["added_objects"] == 0
        assert [v.number for v in catalog.versions("demo")] == [1, 2, 3]
        assert object_versions(store, "public", "demo/versions/2/")  # each written once (asserted inside)
        catalog.dispose()
