"""Fixity audits: a byte flipped behind the pipeline's back is found, named, recorded and counted."""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import FixityConfig
from imaging_ingest.core.checksum import sha256_b64_from_hex
from imaging_ingest.ops import metrics
from imaging_ingest.pipeline.ingest import Ingest
from imaging_ingest.publish.fixity import (
    FixityMismatch,
    audit_collection,
    plan_audits,
    raise_on_mismatch,
    select_targets,
)
from imaging_ingest.storage.objects import ObjectStore

from .conftest import BACKENDS, SECRET, catalog_url_for, demo_config_for, make_settings


@dataclass
class Published:
    catalog: Catalog
    store: ObjectStore
    keys: list[str]


@pytest.fixture(scope="module", params=BACKENDS)
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
              synth_cache: Path) -> Iterator[Published]:
    base = tmp_path_factory.mktemp(f"fixity-{request.param}")
    drop = base / "drop"
    shutil.copytree(synth_cache, drop / "batch-1")
    (drop / "batch-1" / "READY").write_text("complete\n")
    with catalog_url_for(request.param, base) as url:
        settings = make_settings(base / "home", url, s3_endpoint)
        store, catalog = ObjectStore(settings), Catalog.from_url(url)
        # With supporting files: a clinical table is published beside the instances and audited too.
        config = demo_config_for(drop, supporting=True)
        summary = Ingest(config, settings, secret=SECRET, catalog=catalog, store=store).run()
        objects = store.get_json("public", summary["release_key"])["objects"]
        assert any(o.get("kind") == "clinical" for o in objects)
        keys = [o["key"] for o in objects]
        yield Published(catalog, store, keys)
        catalog.dispose()


@pytest.fixture
def counters() -> Iterator[list[tuple[str, float, dict[str, str]]]]:
    seen: list[tuple[str, float, dict[str, str]]] = []
    remove = metrics.add_hook(lambda name, value, tags: seen.append((name, value, tags)))
    yield seen
    remove()


@pytest.fixture
def tampered(published: Published) -> Iterator[tuple[str, bytes]]:
    """Flip one byte of a published object directly in S3 (no pipeline involved); restore it after."""
    key = published.keys[len(published.keys) // 2]
    original = published.store.get_bytes("public", key)
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    published.store.client.put_object(Bucket=published.store.bucket("public"), Key=key, Body=bytes(data))
    yield key, bytes(data)
    published.store.put_bytes("public", key, original)


def _audit_all(published: Published):
    targets = select_targets(published.catalog, "demo", FixityConfig(), mode="all")
    return audit_collection(published.catalog, published.store, "demo", targets)


def test_an_intact_collection_passes_and_every_check_is_recorded(published: Published, counters: list) -> None:
    report = _audit_all(published)
    assert report.checked == len(published.keys) and report.failures == []
    raise_on_mismatch([report])
    for key in published.keys[:3]:
        checks = [e for e in published.catalog.audit_trail(key) if e.event_type == "fixity check"]
        assert checks and checks[-1].outcome == "success"
        assert checks[-1].detail == "size, stored SHA-256 and re-computed SHA-256/MD5 match"  # S3's checksum was there
    assert ("fixity_failures", 0, {"collection": "demo"}) in counters


def test_a_flipped_byte_fails_the_audit_naming_the_object(
    published: Published, tampered: tuple[str, bytes], counters: list
) -> None:
    key, _ = tampered
    report = _audit_all(published)
    assert [f.key for f in report.failures] == [key]
    assert "re-computed SHA-256 differs" in "; ".join(report.failures[0].problems)
    with pytest.raises(FixityMismatch, match=key.replace(".", r"\.")):
        raise_on_mismatch([report])
    last = [e for e in published.catalog.audit_trail(key) if e.event_type == "fixity check"][-1]
    assert last.outcome == "failure" and "SHA-256" in last.detail
    for other in published.keys:
        if other != key:
            assert [e for e in published.catalog.audit_trail(other) if e.event_type == "fixity check"][-1].outcome == "success"
    assert ("fixity_failures", 1, {"collection": "demo"}) in counters


def test_a_rewrite_with_a_matching_s3_checksum_is_still_caught(published: Published) -> None:
    key = published.keys[0]
    original = published.store.get_bytes("public", key)
    forged = original[:-1] + bytes([original[-1] ^ 0xFF])
    published.store.client.put_object(
        Bucket=published.store.bucket("public"), Key=key, Body=forged, ChecksumAlgorithm="SHA256",
        ChecksumSHA256=sha256_b64_from_hex(hashlib.sha256(forged).hexdigest()),
    )
    try:
        report = _audit_all(published)
        problems = report.failures[0].problems
        assert [f.key for f in report.failures] == [key]
        assert "stored S3 SHA-256 differs from the catalog's" in problems
        assert "re-computed MD5 differs from the catalog's" in problems
    finally:
        published.store.put_bytes("public", key, original)


def test_a_missing_object_fails_the_audit(published: Published) -> None:
    key = published.keys[-1]
    original = published.store.get_bytes("public", key)
    published.store.delete("public", key)
    try:
        report = _audit_all(published)
        assert [(f.key, f.problems) for f in report.failures] == [(key, ("missing from the object store",))]
    finally:
        published.store.put_bytes("public", key, original)


def test_daily_samples_cover_the_collection_within_the_period(published: Published) -> None:
    policy = FixityConfig(mode="sample", period_days=4)
    _audit_all(published)  # all checked once: the sample then starts over from the oldest checks
    daily = math.ceil(len(published.keys) / policy.period_days)
    seen: set[str] = set()
    for _day in range(policy.period_days):
        targets = select_targets(published.catalog, "demo", policy)
        assert len(targets) == daily
        # Objects not yet checked this period come first (the last day tops up with the oldest checks).
        assert len({t.key for t in targets} - seen) == min(daily, len(published.keys) - len(seen))
        audit_collection(published.catalog, published.store, "demo", targets)
        seen |= {t.key for t in targets}
    assert seen == set(published.keys)


def test_a_publication_audit_includes_the_new_version(published: Published) -> None:
    policy = FixityConfig(mode="sample", period_days=1000)
    targets = select_targets(published.catalog, "demo", policy, version=1)
    assert {t.key for t in targets} == set(published.keys)
    assert len(select_targets(published.catalog, "demo", policy)) == 1


def test_plan_audits(published: Published) -> None:
    from imaging_ingest.config import load_collection_config

    from .conftest import DEMO_CONFIG

    demo = load_collection_config(DEMO_CONFIG)
    other = demo.model_copy(update={"id": "other"})
    assert [p.collection for p in plan_audits([demo, other])] == ["demo", "other"]
    assert [p.as_dict() for p in plan_audits([demo, other], requested="other", mode="all")] == [
        {"collection": "other", "mode": "all", "version": None}]
    assert [p.as_dict() for p in plan_audits([demo, other], published={"demo": [2, 3], "gone": [1]})] == [
        {"collection": "demo", "mode": "policy", "version": 3}]
    with pytest.raises(ValueError, match="unknown collection"):
        plan_audits([demo], requested="nope")
