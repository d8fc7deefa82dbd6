"""Fixity audits of a mirror: the primary's check, object by object, against the mirror's bytes.

Every published object of the collection (all versions) is checked on the mirror as the
primary's audit checks it (``fixity.check_object``: present, size, stored SHA-256, a
streaming re-hash against the catalog's SHA-256 and MD5). A finding raises the same
``FixityMismatch`` and adds to the same ``fixity_failures`` counter as on the primary, so
the same task failure notice and the same Prometheus alert fire; the message names the
target. The catalog's last-check stamps stay the primary's (they plan its daily sample).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from imaging_ingest.catalog import Catalog
from imaging_ingest.mirror.sync import MirrorStore, collection_tier
from imaging_ingest.ops.metrics import metrics
from imaging_ingest.publish.fixity import FixityMismatch, FixityReport, check_object

__all__ = ["audit_mirror", "raise_on_mirror_mismatch"]

log = logging.getLogger(__name__)


def audit_mirror(catalog: Catalog, mirror: MirrorStore, collection_id: str, *, workers: int = 8) -> FixityReport:
    """Check every published object of a collection on the mirror."""
    collection_tier(catalog, mirror.target, collection_id)  # a restricted collection has no business on a public mirror
    targets = catalog.fixity_targets(collection_id)
    report = FixityReport(collection_id)
    _ = mirror.client
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checks = list(pool.map(lambda t: check_object(mirror, t), targets))
    report.checked = len(checks)
    report.failures = [c for c in checks if not c.ok]
    metrics().inc("fixity_checked", report.checked, collection=collection_id)
    metrics().inc("fixity_failures", len(report.failures), collection=collection_id)
    for failure in report.failures:
        log.error("mirror %s fixity: %s: %s", mirror.target.id, failure.key, failure.detail)
    log.info("mirror %s fixity %s: %d checked, %d failed", mirror.target.id, collection_id, report.checked,
             len(report.failures))
    return report


def raise_on_mirror_mismatch(target_id: str, report: FixityReport) -> None:
    """The primary's alert (``FixityMismatch``), its message saying which mirror."""
    if report.failures:
        error = FixityMismatch(report.failures)
        error.args = (f"mirror {target_id}: {error.args[0]}",)
        raise error
