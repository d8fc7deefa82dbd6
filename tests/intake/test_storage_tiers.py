"""Tiers: ``storage init`` (idempotent), per-tier storage classes and lifecycle, public vs restricted access,
checksummed multipart uploads and copies of large objects."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from imaging_ingest.config.settings import TIERS, Settings
from imaging_ingest.core.checksum import file_digests
from imaging_ingest.storage import objects as storage_module
from imaging_ingest.storage.objects import ObjectStore
from imaging_ingest.storage.policy import StoragePolicy, TierPolicy, lifecycle_rules
from imaging_ingest.storage.tiers import init_storage

from .conftest import make_settings


@pytest.fixture
def fresh(tmp_path: Path, s3_endpoint: str) -> Settings:
    """Settings whose buckets do not exist yet."""
    settings = make_settings(tmp_path / "home", s3_endpoint)
    return settings.model_copy(update={"bucket_prefix": settings.bucket_prefix + "-new"})


def test_init_creates_everything_then_changes_nothing(fresh: Settings) -> None:
    store = ObjectStore(fresh)
    first = init_storage(store)
    assert {c.bucket for c in first if c.what == "bucket" and c.state == "created"} == {fresh.bucket(t) for t in TIERS}
    second = init_storage(store)
    assert [c for c in second if c.state != "unchanged"] == []
    client = store.client
    for tier in TIERS:
        assert client.get_bucket_versioning(Bucket=fresh.bucket(tier))["Status"] == "Enabled"


def test_lifecycle_follows_the_policy(fresh: Settings) -> None:
    store = ObjectStore(fresh)
    init_storage(store)
    rules = {t: store.client.get_bucket_lifecycle_configuration(Bucket=fresh.bucket(t))["Rules"] for t in ("raw", "staging")}
    raw = {r["ID"]: r for r in rules["raw"]}
    assert raw["archive-after-days"]["Transitions"][0]["StorageClass"] == "DEEP_ARCHIVE"
    assert raw["archive-after-days"]["Transitions"][0]["Days"] == 30
    staging = {r["ID"]: r for r in rules["staging"]}
    assert staging["expire-after-days"]["Expiration"]["Days"] == 30


def test_changed_policy_is_applied_and_reported(fresh: Settings, tmp_path: Path) -> None:
    store = ObjectStore(fresh)
    init_storage(store)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("raw:\n  transition_days: 90\n  transition_class: GLACIER\n")
    policy = StoragePolicy.load(policy_file)
    changes = init_storage(ObjectStore(fresh, policy=policy))
    changed = [(c.tier, c.what) for c in changes if c.state == "changed"]
    assert changed == [("raw", "lifecycle")]
    rules = store.client.get_bucket_lifecycle_configuration(Bucket=fresh.bucket("raw"))["Rules"]
    assert {r["ID"]: r for r in rules}["archive-after-days"]["Transitions"][0] == {"Days": 90, "StorageClass": "GLACIER"}


def test_only_the_public_tier_is_public(fresh: Settings) -> None:
    """moto stores bucket policies and public access blocks but does not enforce them for
    anonymous requests, so this checks the documents that AWS (or MinIO) enforces."""
    store = ObjectStore(fresh)
    init_storage(store)
    client = store.client
    public = json.loads(client.get_bucket_policy(Bucket=fresh.bucket("public"))["Policy"])
    allowed = {(s["Effect"], s["Principal"], a) for s in public["Statement"] for a in s["Action"]}
    assert allowed == {("Allow", "*", "s3:GetObject"), ("Allow", "*", "s3:ListBucket")}
    block = client.get_public_access_block(Bucket=fresh.bucket("public"))["PublicAccessBlockConfiguration"]
    assert block["BlockPublicPolicy"] is False and block["BlockPublicAcls"] is True
    for tier in ("raw", "staging", "quarantine", "restricted"):
        with pytest.raises(client.exceptions.ClientError) as missing:
            client.get_bucket_policy(Bucket=fresh.bucket(tier))
        assert missing.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
        block = client.get_public_access_block(Bucket=fresh.bucket(tier))["PublicAccessBlockConfiguration"]
        assert all(block.values()), (tier, block)


def test_anonymous_client_reads_the_public_tier(fresh: Settings) -> None:
    store = ObjectStore(fresh)
    init_storage(store)
    store.put_bytes("public", "c/versions/1/release.json", b"{}")
    anonymous = boto3.client(
        "s3", endpoint_url=fresh.s3_endpoint, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
    )
    body = anonymous.get_object(Bucket=fresh.bucket("public"), Key="c/versions/1/release.json")["Body"].read()
    assert body == b"{}"


def test_policy_refuses_a_public_restricted_tier() -> None:
    with pytest.raises(ValueError, match="can never be public_read"):
        StoragePolicy(restricted=TierPolicy(public_read=True))
    with pytest.raises(ValueError, match="go together"):
        TierPolicy(transition_days=10)
    with pytest.raises(ValueError, match="extra"):
        StoragePolicy.model_validate({"archive": {}})


def test_bad_policy_file_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("staging:\n  expire_days: 0\n")
    with pytest.raises(ValueError, match=r"policy.yaml: field 'staging.expire_days'"):
        StoragePolicy.load(path)


def test_writes_get_each_tiers_storage_class(settings: Settings) -> None:
    store = ObjectStore(settings)
    store.put_bytes("restricted", "c/a", b"restricted bytes")
    store.put_bytes("public", "c/b", b"public bytes")
    assert store.head("restricted", "c/a").storage_class == "STANDARD_IA"
    assert store.head("public", "c/b").storage_class == "STANDARD"
    store.copy("public", "c/b", "restricted", "c/b")
    assert store.head("restricted", "c/b").storage_class == "STANDARD_IA"
    assert lifecycle_rules(store.policy.tier("public")) == []


def test_large_objects_go_multipart_and_keep_their_sha256(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(storage_module, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    path = tmp_path / "slide.svs"
    with open(path, "wb") as fh:
        for _ in range(13):
            fh.write(os.urandom(1024 * 1024))
    digest = file_digests(path).sha256
    store = ObjectStore(settings)
    store.put_file("raw", "c/slide", path, sha256=digest)
    meta = store.client.head_object(Bucket=settings.bucket("raw"), Key="c/slide")
    assert meta["ETag"].strip('"').endswith("-3")  # three parts
    assert store.head("raw", "c/slide").sha256 == digest
    store.copy("raw", "c/slide", "restricted", "c/slide")
    assert store.head("restricted", "c/slide").sha256 == digest
    assert store.head("restricted", "c/slide").size == path.stat().st_size


def test_storage_init_command_is_idempotent(
    fresh: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from imaging_ingest.cli import main

    monkeypatch.setenv("IMAGING_INGEST_HOME", str(fresh.home))
    monkeypatch.setenv("IMAGING_INGEST_S3_ENDPOINT", fresh.s3_endpoint or "")
    monkeypatch.setenv("IMAGING_INGEST_BUCKET_PREFIX", fresh.bucket_prefix)
    assert main(["storage", "init", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {r["state"] for r in first if r["what"] == "bucket"} == {"created"}
    assert main(["storage", "init", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert {r["state"] for r in second} == {"unchanged"}
    assert main(["storage", "init"]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_runs_reconcile_once_per_policy(fresh: Settings, tmp_path: Path) -> None:
    """A run's ``ensure_storage`` sets up a new deployment, then costs one read until the policy changes."""
    from imaging_ingest.storage.tiers import ensure_storage

    store = ObjectStore(fresh)
    first = ensure_storage(store)
    assert {c.bucket for c in first if c.what == "bucket" and c.state == "created"} == {fresh.bucket(t) for t in TIERS}
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    assert ensure_storage(store) == []
    assert calls == ["GetObject"]
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("raw:\n  transition_days: 90\n  transition_class: GLACIER\n")
    changed = ensure_storage(ObjectStore(fresh, policy=StoragePolicy.load(policy_file)))
    assert [(c.tier, c.what) for c in changed if c.state == "changed"] == [("raw", "lifecycle")]
