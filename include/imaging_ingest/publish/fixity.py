"""Fixity audits: prove, long after publication, that every published byte is intact.

Each published object is checked two ways against the checksums the catalog recorded
at registration: the SHA-256 the object store keeps for it (S3 ``ChecksumSHA256``, or
the ``sha256`` tag of a multipart upload), and a streaming re-hash of its bytes (SHA-256
and MD5, in constant memory). Every check is recorded as a PREMIS ``fixity check``
event on the object; any mismatch fails the audit, names the objects, and increments
the ``fixity.mismatch`` counter.

An audit covers either all of a collection's published objects (those of every version:
old versions stay downloadable, so they stay checked) or a daily sample: the least
recently checked ``ceil(objects / period_days)``, so that daily audits cover the whole
collection within ``period_days``, whatever days were missed before. A publication
triggers an audit that also includes every object the new version added.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.store import FixityTarget
from imaging_ingest.config import CollectionConfig, FixityConfig
from imaging_ingest.core.checksum import CHUNK, Digests
from imaging_ingest.ops.metrics import metrics
from imaging_ingest.storage.objects import ObjectStore

__all__ = [
    "AuditPlan",
    "FixityCheck",
    "FixityMismatch",
    "FixityReport",
    "audit_collection",
    "check_object",
    "plan_audits",
    "raise_on_mismatch",
    "select_targets",
    "stored_sha256",
]

log = logging.getLogger(__name__)

Mode = Literal["policy", "all", "sample"]


@dataclass(frozen=True)
class FixityCheck:
    """The outcome of one object's check; ``problems`` is empty when it passed."""

    key: str
    tier: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def detail(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        return "; ".join(("size, stored SHA-256 and re-computed SHA-256/MD5 match", *self.notes))


@dataclass
class FixityReport:
    """One collection's audit (PHI-free: object keys are de-identified UIDs)."""

    collection_id: str
    checked: int = 0
    failures: list[FixityCheck] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.checked - len(self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection_id,
            "checked": self.checked,
            "passed": self.passed,
            "failed": len(self.failures),
            "failures": [{"key": f.key, "tier": f.tier, "problems": list(f.problems)} for f in self.failures],
        }


class FixityMismatch(RuntimeError):
    """Published objects whose bytes no longer match their recorded checksums."""

    def __init__(self, failures: Sequence[FixityCheck]) -> None:
        self.failures = list(failures)
        shown = "; ".join(f"{f.key} ({', '.join(f.problems)})" for f in self.failures[:20])
        more = f"; and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        super().__init__(f"fixity check failed for {len(self.failures)} object(s): {shown}{more}")


def stored_sha256(store: ObjectStore, tier: str, key: str, reported: str | None) -> str | None:
    """The SHA-256 the object store keeps for an object (a multipart upload keeps it as a tag)."""
    if reported:
        return reported
    tags = store.client.get_object_tagging(Bucket=store.bucket(tier), Key=key).get("TagSet", [])
    return next((t["Value"] for t in tags if t["Key"] == "sha256"), None)


def check_object(store: ObjectStore, target: FixityTarget) -> FixityCheck:
    """Check one object: present, right size, stored checksum, and a streaming re-hash."""
    info = store.head(target.tier, target.key)
    if info is None:
        return FixityCheck(target.key, target.tier, ("missing from the object store",))
    problems: list[str] = []
    notes: list[str] = []
    if info.size != target.size:
        problems.append(f"size {info.size} bytes, expected {target.size}")
    stored = stored_sha256(store, target.tier, target.key, info.sha256)
    if stored is None:
        notes.append("the object store keeps no SHA-256 for it")
    elif stored != target.sha256:
        problems.append("stored S3 SHA-256 differs from the catalog's")
    digests = Digests()
    body = store.client.get_object(Bucket=store.bucket(target.tier), Key=target.key)["Body"]
    for chunk in body.iter_chunks(CHUNK):
        digests.update(chunk)
    if digests.sha256 != target.sha256:
        problems.append("re-computed SHA-256 differs from the catalog's")
    if digests.md5 != target.md5:
        problems.append("re-computed MD5 differs from the catalog's")
    return FixityCheck(target.key, target.tier, tuple(problems), tuple(notes))


def select_targets(
    catalog: Catalog,
    collection_id: str,
    policy: FixityConfig,
    *,
    mode: Mode = "policy",
    version: int | None = None,
) -> list[FixityTarget]:
    """The objects an audit checks: all, or the daily sample; plus a new version's objects."""
    effective = policy.mode if mode == "policy" else mode
    if effective == "all":
        targets = catalog.fixity_targets(collection_id)
    else:
        total = catalog.published_object_count(collection_id)
        targets = catalog.fixity_targets(collection_id, limit=math.ceil(total / policy.period_days)) if total else []
    if version is not None:
        known = {t.key for t in targets}
        targets += [t for t in catalog.fixity_targets(collection_id, version=version) if t.key not in known]
    return targets


def audit_collection(
    catalog: Catalog,
    store: ObjectStore,
    collection_id: str,
    targets: Iterable[FixityTarget],
    *,
    workers: int = 4,
    batch: int = 500,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> FixityReport:
    """Check objects (``workers`` at a time), recording an audit event per check as it goes."""
    targets = list(targets)
    report = FixityReport(collection_id)
    tick = progress(f"fixity {collection_id}", len(targets)) if progress and targets else None
    _ = store.client  # one client, created before the threads share it
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(targets), batch):
            checks = list(pool.map(lambda t: check_object(store, t), targets[start : start + batch]))
            catalog.record_fixity(collection_id, [(c.key, c.ok, c.detail) for c in checks])
            report.checked += len(checks)
            report.failures += [c for c in checks if not c.ok]
            if tick:
                for _ in checks:
                    tick()
    metrics().inc("fixity_checked", report.checked, collection=collection_id)
    metrics().inc("fixity_failures", len(report.failures), collection=collection_id)
    for failure in report.failures:
        log.error("fixity: %s in %s: %s", failure.key, failure.tier, failure.detail)
    log.info("fixity %s: %d checked, %d failed", collection_id, report.checked, len(report.failures))
    return report


def raise_on_mismatch(reports: Iterable[FixityReport]) -> None:
    failures = [f for r in reports for f in r.failures]
    if failures:
        raise FixityMismatch(failures)


@dataclass(frozen=True)
class AuditPlan:
    """One collection's share of an audit run (what the fixity DAG maps over)."""

    collection: str
    mode: Mode = "policy"
    version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "mode": self.mode, "version": self.version}


def plan_audits(
    configs: Sequence[CollectionConfig],
    *,
    requested: str | None = None,
    mode: Mode = "policy",
    published: Mapping[str, Sequence[int]] | None = None,
) -> list[AuditPlan]:
    """Which collections an audit run checks.

    A run for a requested collection checks that one; a run triggered by publications
    checks the collections that published, including every object of their newest
    announced version; a timetabled run checks every collection.
    """
    known = {c.id for c in configs}
    if requested:
        if requested not in known:
            raise ValueError(f"unknown collection {requested!r}")
        return [AuditPlan(requested, mode)]
    if published:
        return [
            AuditPlan(cid, mode, max(versions) if versions else None)
            for cid, versions in sorted(published.items())
            if cid in known
        ]
    return [AuditPlan(c.id, mode) for c in sorted(configs, key=lambda c: c.id)]
