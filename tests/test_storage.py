"""Object-store tiers against a real S3 endpoint (moto's server on loopback)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imaging_ingest.config.settings import TIERS, Settings
from imaging_ingest.core.checksum import file_digests
from imaging_ingest.storage.objects import LocalCache, ObjectStore


def test_ensure_buckets_is_idempotent(settings: Settings, store: ObjectStore) -> None:
    assert store.ensure_buckets() == []  # the fixture already created them
    names = {b["Name"] for b in store.client.list_buckets()["Buckets"]}
    assert {settings.bucket(t) for t in TIERS} <= names
    for tier in TIERS:
        assert store.client.get_bucket_versioning(Bucket=settings.bucket(tier))["Status"] == "Enabled"


def test_unknown_tier_is_an_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown storage tier"):
        settings.bucket("attic")


def test_put_head_copy_keep_sha256(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"\x00\x01" * 5000)
    digest = file_digests(path)
    info = store.put_file("staging", "c/s/f.bin", path)
    assert info.sha256 == digest.sha256
    assert store.head("staging", "c/s/f.bin").sha256 == digest.sha256
    copied = store.copy("staging", "c/s/f.bin", "public", "c/f.bin", size=digest.size)
    assert copied.sha256 == digest.sha256
    assert store.get_bytes("public", "c/f.bin") == path.read_bytes()
    assert store.head("public", "missing") is None
    assert store.sizes("public", "c/") == {"c/f.bin": digest.size}


def test_json_round_trip_and_listing(store: ObjectStore) -> None:
    store.put_json("public", "x/versions/1/release.json", {"objects": [], "version": 1})
    assert store.get_json("public", "x/versions/1/release.json")["version"] == 1
    assert [o.key for o in store.list("public", "x/")] == ["x/versions/1/release.json"]


def test_json_is_stored_indented_sorted_and_verified(store: ObjectStore) -> None:
    document = {"version": 2, "objects": [{"key": f"c/{i}.dcm", "size": i, "patient": "Zoë"} for i in range(500)]}
    store.put_json("public", "c/versions/2/release.json", document)
    data = store.get_bytes("public", "c/versions/2/release.json")
    assert data == json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    assert store.head("public", "c/versions/2/release.json").sha256 == hashlib.sha256(data).hexdigest()


def test_local_cache_refetches_what_is_missing_or_wrong(store: ObjectStore, settings: Settings) -> None:
    store.put_bytes("raw", "c/s/abc", b"original bytes")
    cache = LocalCache(settings.cache_dir, store)
    path = cache.fetch("raw", "c/s/abc", size=14)
    assert path.read_bytes() == b"original bytes"
    path.write_bytes(b"truncated")
    assert cache.fetch("raw", "c/s/abc", size=14).read_bytes() == b"original bytes"
