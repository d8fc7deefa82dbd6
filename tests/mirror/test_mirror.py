"""Mirrors: two loopback S3 servers as primary and mirror; synced, verified, audited, restricted kept off."""

from __future__ import annotations

import uuid

import pytest

from imaging_ingest.config import License
from imaging_ingest.download.selection import from_index
from imaging_ingest.download.transfer import S3Source, download
from imaging_ingest.mirror.audit import audit_mirror, raise_on_mirror_mismatch
from imaging_ingest.mirror.config import MirrorTarget
from imaging_ingest.mirror.sync import (
    MirrorStore,
    RestrictedMirrorRefused,
    expected_objects,
    plan_collections,
    sync_collection,
    verify_collection,
    withdraw_collection,
)
from imaging_ingest.ops import metrics as metrics_module
from imaging_ingest.publish.fixity import FixityMismatch

pytestmark = pytest.mark.mirror


def _mirror(endpoint: str, *, restricted: bool = False) -> MirrorStore:
    target = MirrorTarget(id="offsite", endpoint=endpoint, bucket=f"mirror-{uuid.uuid4().hex[:10]}", restricted=restricted)
    store = MirrorStore(target)
    store.ensure_bucket()
    return store


def test_a_version_is_mirrored_incrementally_and_verified(archive, mirror_endpoint, tmp_path) -> None:
    assert mirror_endpoint != archive.settings.s3_endpoint  # two servers
    mirror = _mirror(mirror_endpoint)
    report = sync_collection(archive.store, archive.catalog, mirror, "demo")
    expected = expected_objects(archive.store, archive.catalog, "demo", "public")
    assert report.ok and report.versions == [1, 2]
    assert report.copied == report.in_sync == len(expected)
    assert set(mirror.sizes("public", "demo/")) == set(archive.store.sizes("public", "demo/"))
    for key in list(expected)[:: max(1, len(expected) // 25)]:
        assert mirror.get_bytes("public", key) == archive.store.get_bytes("public", key)
    again = sync_collection(archive.store, archive.catalog, mirror, "demo")
    assert again.copied == 0 and again.ok and again.in_sync == len(expected)  # incremental: nothing twice
    assert audit_mirror(archive.catalog, mirror, "demo").failures == []
    # the mirror serves downloads: version 1 through its index, bit for bit
    source = S3Source(mirror.target.bucket, mirror_endpoint, anonymous=False)
    selection = from_index(source, "demo", 1)
    download(selection, source, tmp_path / "v1", progress=False)
    for item in selection.items:
        assert (tmp_path / "v1" / item.path).read_bytes() == archive.v1_snapshot[item.key]


def test_a_tampered_or_missing_object_on_the_mirror_is_found_and_alerted(archive, mirror_endpoint) -> None:
    mirror = _mirror(mirror_endpoint)
    sync_collection(archive.store, archive.catalog, mirror, "demo")
    keys = sorted(k for k in mirror.sizes("public", "demo/") if k.endswith(".dcm"))
    tampered, deleted = keys[0], keys[1]
    data = bytearray(mirror.get_bytes("public", tampered))
    data[-1] ^= 0xFF  # same size, one byte changed
    mirror.client.put_object(Bucket=mirror.target.bucket, Key=tampered, Body=bytes(data))
    mirror.delete("public", deleted)

    seen: list[tuple[str, float]] = []
    remove = metrics_module.add_hook(lambda key, value, tags: seen.append((key, value)))
    try:
        report = audit_mirror(archive.catalog, mirror, "demo")
    finally:
        remove()
    problems = {f.key: f.problems for f in report.failures}
    assert set(problems) == {tampered, deleted}
    assert "missing from the object store" in problems[deleted]
    assert "re-computed SHA-256 differs from the catalog's" in problems[tampered]
    assert ("fixity_failures", 2) in seen  # the primary's metric: the same Prometheus alert
    with pytest.raises(FixityMismatch, match="mirror offsite: fixity check failed for 2 object"):
        raise_on_mirror_mismatch("offsite", report)

    status = verify_collection(archive.store, archive.catalog, mirror, "demo")
    assert status.missing == [deleted] and status.differs == [tampered] and not status.ok
    plain = sync_collection(archive.store, archive.catalog, mirror, "demo")  # copies the missing, keeps the evidence
    assert plain.missing == [] and plain.differs == [tampered]
    repaired = sync_collection(archive.store, archive.catalog, mirror, "demo", repair=True)
    assert repaired.ok and repaired.copied == 1
    assert mirror.get_bytes("public", tampered) == archive.store.get_bytes("public", tampered)


def test_a_restricted_collection_stays_off_a_public_mirror(archive, mirror_endpoint) -> None:
    secret = archive.config.model_copy(update={"id": "secret", "title": "Restricted", "license": License.RESTRICTED,
                                               "tier": "restricted"})
    archive.catalog.ensure_collection(secret)
    archive.catalog.apply_release("secret", 1, "secret/versions/1/release.json", [], total_bytes=0)
    archive.store.put_json("restricted", "secret/versions/1/release.json", {"objects": []})
    public = _mirror(mirror_endpoint)
    covered, refused = plan_collections(archive.catalog, public.target)
    assert covered == ["demo"] and refused == ["secret"]
    with pytest.raises(RestrictedMirrorRefused, match="secret is restricted"):
        sync_collection(archive.store, archive.catalog, public, "secret")
    with pytest.raises(RestrictedMirrorRefused):
        audit_mirror(archive.catalog, public, "secret")
    assert public.sizes("public", "secret/") == {}
    # a collection mirrored while public and reclassified to restricted afterwards is withdrawn from the public target
    public.client.put_object(Bucket=public.target.bucket, Key="secret/versions/1/release.json", Body=b"{}")
    public.client.put_object(Bucket=public.target.bucket, Key="secret/versions/1/release.json", Body=b"{ }")
    assert withdraw_collection(public, "secret") == 2
    assert public.client.list_object_versions(Bucket=public.target.bucket, Prefix="secret/").get("Versions", []) == []
    assert withdraw_collection(public, "secret") == 0
    cleared = _mirror(mirror_endpoint, restricted=True)
    assert plan_collections(archive.catalog, cleared.target) == (["demo", "secret"], [])
    assert sync_collection(archive.store, archive.catalog, cleared, "secret").ok
    assert "secret/versions/1/release.json" in cleared.sizes("restricted", "secret/")


def test_the_mirror_command_syncs_verifies_and_audits(archive, mirror_endpoint, tmp_path, monkeypatch, capsys) -> None:
    import json

    from imaging_ingest.cli import main

    for name, value in {"IMAGING_INGEST_CATALOG_URL": archive.settings.catalog_url,
                        "IMAGING_INGEST_S3_ENDPOINT": archive.settings.s3_endpoint,
                        "IMAGING_INGEST_BUCKET_PREFIX": archive.settings.bucket_prefix}.items():
        monkeypatch.setenv(name, value)
    target = tmp_path / "partner.yaml"
    target.write_text(f"id: partner\nendpoint: {mirror_endpoint}\nbucket: mirror-{uuid.uuid4().hex[:10]}\n")
    assert main(["mirror", str(target), "--verify-only", "--json", "--collection", "demo"]) == 1  # empty: all missing
    capsys.readouterr()
    assert main(["mirror", str(target), "--audit", "--json", "--collection", "demo"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["ok"] and row["copied"] == row["in_sync"] > 0 and row["fixity_failed"] == 0
