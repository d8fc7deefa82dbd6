"""Replicate a collection's published versions to a mirror target: incremental, checksum-verified, reported.

The mirror holds the same keys as the collection's tier: every object any recorded
version lists, and each version's metadata (``release.json``, DataCite, BagIt tag files,
the release index and the series manifests). A sync lists the mirror once and copies only
what it lacks; each upload sends the object's SHA-256, which the mirror's server checks
before it accepts the bytes. Objects first, each version's ``release.json`` last, as on
the primary: a reader of the mirror who trusts only listed releases never sees half a
version.

A mirror object that differs from the primary (wrong size or stored SHA-256) is reported
and, unless ``repair`` is asked for, left as it is for a person to look at (it may be
evidence). A restricted collection is never copied to a target not marked restricted,
and one reclassified to restricted after it was mirrored is withdrawn from such a target
(every object version under its prefix deleted: ``withdraw_collection``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaging_ingest.catalog import Catalog
from imaging_ingest.config import License
from imaging_ingest.config.settings import Settings
from imaging_ingest.core.checksum import sha256_b64_from_hex
from imaging_ingest.mirror.config import MirrorTarget
from imaging_ingest.storage.objects import MULTIPART_THRESHOLD, ObjectStore

__all__ = [
    "MirrorStore",
    "RestrictedMirrorRefused",
    "SyncReport",
    "expected_objects",
    "collection_tier",
    "may_hold",
    "plan_collections",
    "sync_collection",
    "verify_collection",
    "withdraw_collection",
]

log = logging.getLogger(__name__)


class RestrictedMirrorRefused(RuntimeError):
    """A restricted collection was about to be copied to a target not marked restricted."""


class MirrorStore(ObjectStore):
    """An ``ObjectStore`` whose every tier is the target's one bucket (the keys carry the collection)."""

    def __init__(self, target: MirrorTarget, client: Any = None, environ: dict[str, str] | None = None) -> None:
        settings = Settings(home=Path(tempfile.gettempdir()), catalog_url="sqlite://", s3_endpoint=target.endpoint,
                            s3_region=target.region)
        if client is None:
            import boto3
            from botocore.config import Config

            from imaging_ingest.storage.objects import RETRIES

            client = boto3.client(
                "s3", endpoint_url=target.endpoint, region_name=target.region,
                config=Config(retries=RETRIES, s3={"addressing_style": "path"}, max_pool_connections=32,
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"),
                **target.credentials(environ),
            )
        super().__init__(settings, client)
        self.target = target

    def bucket(self, tier: str) -> str:
        return self.target.bucket

    def storage_class(self, tier: str) -> str | None:
        return None  # the target's own default class

    def sizes(self, tier: str, prefix: str = "") -> dict[str, int]:
        """Every key under a prefix with its size; none when the target bucket does not exist yet."""
        from botocore.exceptions import ClientError

        try:
            return super().sizes(tier, prefix)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return {}
            raise

    def ensure_bucket(self) -> None:
        """Create the target bucket (versioning on) when it does not exist: a fresh mirror."""
        names = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if self.target.bucket not in names:
            self.client.create_bucket(Bucket=self.target.bucket)
        self.client.put_bucket_versioning(Bucket=self.target.bucket, VersioningConfiguration={"Status": "Enabled"})


@dataclass
class SyncReport:
    """One collection on one target: what was copied, what is in sync, what differs (PHI-free: keys are UIDs)."""

    target: str
    collection_id: str
    versions: list[int] = field(default_factory=list)
    copied: int = 0
    bytes_copied: int = 0
    in_sync: int = 0
    missing: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and not self.differs

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "collection": self.collection_id, "versions": self.versions,
            "copied": self.copied, "bytes_copied": self.bytes_copied, "in_sync": self.in_sync,
            "missing": self.missing[:100], "differs": self.differs[:100], "missing_count": len(self.missing),
            "differs_count": len(self.differs), "skipped": self.skipped, "ok": self.ok,
        }


def may_hold(target: MirrorTarget, license_: str, tier: str) -> bool:
    """Whether a target may hold a collection: restricted data only on a target marked restricted."""
    restricted = tier == "restricted" or license_ == License.RESTRICTED.value
    return target.restricted or not restricted


def plan_collections(catalog: Catalog, target: MirrorTarget, only: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The published collections a sync of ``target`` covers, and those it must leave out (restricted)."""
    wanted = set(only)
    covered: list[str] = []
    refused: list[str] = []
    for collection in catalog.collections():
        if (wanted and collection.id not in wanted) or not target.wants(collection.id):
            continue
        if catalog.latest_version(collection.id) is None:
            continue
        (covered if may_hold(target, collection.license, collection.tier) else refused).append(collection.id)
    return sorted(covered), sorted(refused)


def collection_tier(catalog: Catalog, target: MirrorTarget, collection_id: str) -> str:
    """The collection's tier; refuses a restricted collection on a target not marked restricted."""
    collection = catalog.collection(collection_id)
    if collection is None:
        raise ValueError(f"unknown collection {collection_id!r}")
    if not may_hold(target, collection.license, collection.tier):
        raise RestrictedMirrorRefused(
            f"collection {collection_id} is restricted; mirror target {target.id} is not marked restricted"
        )
    return collection.tier


def expected_objects(primary: ObjectStore, catalog: Catalog, collection_id: str, tier: str) -> dict[str, tuple[int, str | None]]:
    """Every key the mirror must hold for a collection: key -> (size, SHA-256 when the releases record it)."""
    expected: dict[str, tuple[int, str | None]] = {
        key: (size, None) for key, size in primary.sizes(tier, f"{collection_id}/versions/").items()
    }
    for version in catalog.versions(collection_id):
        for entry in primary.get_json(tier, version.release_key)["objects"]:
            expected[entry["key"]] = (int(entry["size"]), entry["sha256"])
    return expected


def _copy(primary: ObjectStore, tier: str, mirror: MirrorStore, key: str, size: int, sha256: str | None) -> int:
    """Copy one object with its SHA-256 (the mirror's server checks it); returns the bytes copied."""
    if size < MULTIPART_THRESHOLD:
        data = primary.get_bytes(tier, key)
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ValueError(f"{key} on the primary does not match its recorded SHA-256: not mirrored")
        mirror.client.put_object(Bucket=mirror.bucket(tier), Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                 ChecksumSHA256=sha256_b64_from_hex(digest))
        return len(data)
    with tempfile.TemporaryDirectory(prefix="mirror-") as tmp:
        path = primary.download(tier, key, Path(tmp) / "object")
        mirror.put_file(tier, key, path, sha256=sha256)  # multipart, streamed; SHA-256 kept as a tag
    return size


def sync_collection(
    primary: ObjectStore,
    catalog: Catalog,
    mirror: MirrorStore,
    collection_id: str,
    *,
    workers: int = 8,
    repair: bool = False,
) -> SyncReport:
    """Bring a collection's copy on the mirror up to date, then verify it (see :func:`verify_collection`)."""
    target = mirror.target
    tier = collection_tier(catalog, target, collection_id)
    report = SyncReport(target.id, collection_id, [v.number for v in catalog.versions(collection_id)])
    expected = expected_objects(primary, catalog, collection_id, tier)
    present = mirror.sizes(tier, f"{collection_id}/")
    todo = [k for k in expected if k not in present or (repair and present[k] != expected[k][0])]
    if repair:
        todo += [k for k in _differing(primary, mirror, tier, expected, present, workers) if k not in todo]
    releases = sorted((k for k in todo if k.endswith("/release.json")), key=_version_of)
    payload = [k for k in todo if not k.endswith("/release.json")]
    _ = mirror.client, primary.client  # created once, before the threads share them
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(lambda k: _copy(primary, tier, mirror, k, *expected[k]), payload))
    for key in releases:  # LAST, in version order: a listed release on the mirror is complete
        sizes.append(_copy(primary, tier, mirror, key, *expected[key]))
    report.copied, report.bytes_copied = len(sizes), sum(sizes)
    log.info("mirror %s: %s: %d objects copied (%d bytes)", target.id, collection_id, report.copied, report.bytes_copied)
    return _verified(primary, mirror, tier, expected, report, workers)


def _version_of(key: str) -> int:
    parts = key.split("/")
    return int(parts[-2]) if parts[-2].isdigit() else 0


def _differing(
    primary: ObjectStore, mirror: MirrorStore, tier: str, expected: Mapping[str, tuple[int, str | None]],
    present: Mapping[str, int], workers: int,
) -> list[str]:
    """Keys on the mirror whose size or stored SHA-256 is not the primary's."""

    def differs(key: str) -> bool:
        size, sha256 = expected[key]
        if present[key] != size:
            return True
        info = mirror.head(tier, key)
        if info is None:
            return True
        if sha256 is None:
            source = primary.head(tier, key)
            sha256 = source.sha256 if source else None
        # every object a sync writes carries its SHA-256; one without it was written by someone else
        return sha256 is not None and info.sha256 != sha256

    keys = [k for k in expected if k in present]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        flags = list(pool.map(differs, keys))
    return [k for k, bad in zip(keys, flags, strict=True) if bad]


def _verified(
    primary: ObjectStore, mirror: MirrorStore, tier: str, expected: Mapping[str, tuple[int, str | None]],
    report: SyncReport, workers: int,
) -> SyncReport:
    present = mirror.sizes(tier, f"{report.collection_id}/")
    report.missing = sorted(k for k in expected if k not in present)
    report.differs = sorted(_differing(primary, mirror, tier, expected, present, workers))
    report.in_sync = len(expected) - len(report.missing) - len(report.differs)
    for key in report.missing[:20]:
        log.error("mirror %s: %s is missing", report.target, key)
    for key in report.differs[:20]:
        log.error("mirror %s: %s differs from the primary", report.target, key)
    return report


def verify_collection(primary: ObjectStore, catalog: Catalog, mirror: MirrorStore, collection_id: str, *,
                      workers: int = 8) -> SyncReport:
    """What is in sync and what differs, without copying anything (size and stored SHA-256 per key)."""
    tier = collection_tier(catalog, mirror.target, collection_id)
    report = SyncReport(mirror.target.id, collection_id, [v.number for v in catalog.versions(collection_id)])
    return _verified(primary, mirror, tier, expected_objects(primary, catalog, collection_id, tier), report, workers)


def withdraw_collection(mirror: MirrorStore, collection_id: str) -> int:
    """Delete every object version under a collection's prefix on a target (a collection now restricted).

    The target keeps versions (a bucket with versioning on), so deleting the current object
    would leave the old bytes readable by version id: each version is deleted. Returns how
    many object versions were deleted; 0 when the target never held the collection.
    """
    from botocore.exceptions import ClientError

    bucket = mirror.target.bucket
    deleted = 0
    try:
        pages = list(mirror.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=f"{collection_id}/"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return 0
        raise
    for page in pages:
        entries = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
        for start in range(0, len(entries), 1000):
            mirror.client.delete_objects(Bucket=bucket, Delete={"Objects": entries[start : start + 1000], "Quiet": True})
        deleted += len(page.get("Versions", []))
    if deleted:
        log.warning("mirror %s: %s is restricted now: %d object versions withdrawn from the target",
                    mirror.target.id, collection_id, deleted)
    return deleted
