"""Drops: completion rules, listings that never follow links, S3 prefixes."""

from __future__ import annotations

import os
from pathlib import Path

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import DropConfig
from imaging_ingest.config.settings import Settings
from imaging_ingest.intake.connect import open_drop
from imaging_ingest.intake.drops import display_path
from imaging_ingest.intake.local import LocalDrop
from imaging_ingest.intake.s3 import S3Drop
from imaging_ingest.storage.objects import ObjectStore


def test_local_drop_lists_submissions_and_marker(drop_root: Path, tmp_path: Path) -> None:
    (drop_root / "a" / "sub").mkdir(parents=True)
    (drop_root / "a" / "sub" / "1.dcm").write_bytes(b"x")
    (drop_root / "a" / "READY").write_text("")
    (drop_root / "b").mkdir()
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    os.symlink(secret, drop_root / "b" / "link.dcm")
    os.mkfifo(drop_root / "b" / "pipe.dcm")
    drop = LocalDrop(DropConfig(url=drop_root.as_uri()))
    assert drop.submission_names() == ["a", "b"]
    a, b = drop.submissions()
    assert a.marker_present and [e.path for e in a.entries] == ["sub/1.dcm"]
    assert not b.marker_present
    assert {e.path: e.kind for e in b.entries} == {"link.dcm": "symlink", "pipe.dcm": "special"}


def test_fingerprint_changes_with_content(drop_root: Path) -> None:
    (drop_root / "a").mkdir()
    (drop_root / "a" / "1.dcm").write_bytes(b"x")
    drop = LocalDrop(DropConfig(url=drop_root.as_uri()))
    first = drop.submission("a").fingerprint
    assert drop.submission("a").fingerprint == first
    (drop_root / "a" / "2.dcm").write_bytes(b"y")
    assert drop.submission("a").fingerprint != first


def test_stable_completion_needs_two_equal_polls(drop_root: Path, catalog: Catalog) -> None:
    (drop_root / "a").mkdir()
    (drop_root / "a" / "1.dcm").write_bytes(b"x")
    sub = LocalDrop(DropConfig(url=drop_root.as_uri(), completion="stable")).submission("a")
    assert catalog.observe("c", "a", sub.fingerprint) is False
    assert catalog.observe("c", "a", sub.fingerprint) is True
    assert catalog.observe("c", "a", "changed") is False


def test_display_path_escapes_control_and_invalid_bytes() -> None:
    assert display_path(b"ok/name.dcm") == "ok/name.dcm"
    assert display_path(b"bad\nname\xff.dcm") == "bad\\x0aname\\xff.dcm"


def test_s3_drop(settings: Settings, store: ObjectStore) -> None:
    client = store.client
    client.create_bucket(Bucket=f"{settings.bucket_prefix}-drop")
    bucket = f"{settings.bucket_prefix}-drop"
    client.put_object(Bucket=bucket, Key="incoming/sub1/a/1.dcm", Body=b"abc")
    client.put_object(Bucket=bucket, Key="incoming/sub1/READY", Body=b"")
    client.put_object(Bucket=bucket, Key="incoming/sub2/1.dcm", Body=b"abcd")
    drop = open_drop(DropConfig(url=f"s3://{bucket}/incoming"), settings, client)
    assert isinstance(drop, S3Drop)
    assert drop.submission_names() == ["sub1", "sub2"]
    sub1 = drop.submission("sub1")
    assert sub1.marker_present and [e.path for e in sub1.entries] == ["a/1.dcm"]
    with drop.open(sub1.entries[0]) as fh:
        assert fh.read() == b"abc"
    assert not drop.submission("sub2").marker_present
