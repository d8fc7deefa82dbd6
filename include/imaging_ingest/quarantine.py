"""Curator review of quarantined files: list the queue, approve or reject an item.

The same functions serve every front end (the Airflow plugin's quarantine page, the
command line), so a decision means the same thing wherever it is taken: the item leaves
the pending queue with who decided, when, and an audit event (PREMIS-style) recording
the decision and the curator's note. Decisions are final: approving an approved item
again is a no-op, reversing a decision is refused (quarantine a new copy instead).

*Approved* records that a curator judged the file safe to release after review (for
example a burned-in annotation flag on an image that carries no text); *rejected* that it
must never be published. Neither moves objects: the original stays in the quarantine tier.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from .catalog import Catalog
from .catalog.models import AuditEvent, QuarantineItem, utcnow
from .metrics import metrics

__all__ = [
    "APPROVED",
    "PENDING",
    "REJECTED",
    "QuarantineDecisionError",
    "ReviewItem",
    "approve",
    "decide",
    "pending",
    "pending_counts",
    "reject",
]

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"

#: Curator notes are kept in the restricted catalog's audit trail; a bound keeps them notes.
MAX_NOTE_LENGTH = 2000


class QuarantineDecisionError(ValueError):
    """The decision cannot be taken: no such item, or it was already decided the other way."""


@dataclass(frozen=True)
class ReviewItem:
    """A quarantined file as the review queue shows it: ids, stage and reason, never the file's name."""

    id: int
    collection_id: str
    submission_id: str
    file_id: int
    stage: str
    reason: str
    state: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None

    @classmethod
    def of(cls, row: QuarantineItem) -> ReviewItem:
        return cls(
            row.id,
            row.collection_id,
            row.submission_id,
            row.file_id,
            row.stage,
            row.reason,
            row.state,
            row.created_at,
            row.decided_at,
            row.decided_by,
        )


def pending(catalog: Catalog, collection_id: str | None = None) -> list[ReviewItem]:
    """The review queue, oldest first."""
    return [ReviewItem.of(row) for row in catalog.quarantine_items(collection_id, state=PENDING)]


def pending_counts(catalog: Catalog) -> Counter[str]:
    """Pending items per collection, in one query."""
    with catalog.session() as s:
        rows = s.execute(
            select(QuarantineItem.collection_id, func.count())
            .where(QuarantineItem.state == PENDING)
            .group_by(QuarantineItem.collection_id)
        ).all()
    return Counter({collection: int(n) for collection, n in rows})


def decide(catalog: Catalog, item_id: int, decision: str, user: str, note: str | None = None) -> ReviewItem:
    """Record a curator's decision on one quarantined item (``approved`` or ``rejected``)."""
    if decision not in (APPROVED, REJECTED):
        raise QuarantineDecisionError(f"decision must be {APPROVED} or {REJECTED}, not {decision!r}")
    user = (user or "").strip()
    if not user:
        raise QuarantineDecisionError("a decision needs the curator's user name")
    note = (note or "").strip()[:MAX_NOTE_LENGTH] or None
    with catalog.session() as s:
        row = s.get(QuarantineItem, item_id)
        if row is None:
            raise QuarantineDecisionError(f"no quarantined item {item_id}")
        if row.state == decision:
            return ReviewItem.of(row)
        if row.state != PENDING:
            raise QuarantineDecisionError(
                f"item {item_id} was already {row.state} by {row.decided_by}; decisions are final"
            )
        row.state, row.decided_at, row.decided_by = decision, utcnow(), user
        s.add(
            AuditEvent(
                event_type="quarantine-review",
                agent=f"curator:{user}",
                outcome=decision,
                object_id=f"quarantine/{row.collection_id}/{row.submission_id}/{row.file_id:06d}",
                collection_id=row.collection_id,
                detail=note,
            )
        )
        s.flush()
        item = ReviewItem.of(row)
    sink = metrics()
    sink.inc("quarantine_decisions", collection=item.collection_id, decision=decision)
    sink.set("quarantine_pending", pending_counts(catalog)[item.collection_id], collection=item.collection_id)
    return item


def approve(catalog: Catalog, item_id: int, user: str, note: str | None = None) -> ReviewItem:
    """Approve a quarantined file for release (a curator reviewed it and found no PHI)."""
    return decide(catalog, item_id, APPROVED, user, note)


def reject(catalog: Catalog, item_id: int, user: str, note: str | None = None) -> ReviewItem:
    """Reject a quarantined file: it is never published."""
    return decide(catalog, item_id, REJECTED, user, note)
