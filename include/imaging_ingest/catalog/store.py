"""The catalog's operations, as the pipeline and the curator CLI use them.

Each method is one transaction. Writes are idempotent (upserts keyed by de-identified
UIDs or submission ids), so a task that is retried after a crash converges to the same
rows instead of duplicating them.

Every query the pipeline runs per submission is keyed by an index (collection plus a UID,
hash, key or version number); ``bench/catalog`` checks that with ``EXPLAIN`` on a catalog
of five million instances.
"""

from imaging_ingest.catalog.audit import AuditMixin
from imaging_ingest.catalog.instances import InstancesMixin
from imaging_ingest.catalog.releases import ReleasesMixin
from imaging_ingest.catalog.submissions import SubmissionsMixin
from imaging_ingest.catalog.types import (
    CatalogOutOfSync,
    ClaimOutcome,
    FixityTarget,
    InstanceRecord,
    InvalidTransition,
    Member,
    RegisteredObject,
    replacement_key,
)

__all__ = [
    "Catalog",
    "CatalogOutOfSync",
    "ClaimOutcome",
    "FixityTarget",
    "InstanceRecord",
    "InvalidTransition",
    "Member",
    "RegisteredObject",
    "replacement_key",
]


class Catalog(SubmissionsMixin, InstancesMixin, ReleasesMixin, AuditMixin):
    """The archive's catalog database (SQLite embedded, PostgreSQL in production).

    One class for callers, written as one mixin per concern: ``submissions.py``,
    ``instances.py``, ``releases.py`` and ``audit.py`` on top of ``base.py`` (engine, sessions,
    migrations).
    """
