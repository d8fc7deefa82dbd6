"""Curators in the loop: quarantine decisions, evidence, and publishing what was approved.

A quarantined item has a reason (catalog), the original and a ``reason.json`` (quarantine
tier) and, for images screening read, the evidence: ``evidence.png`` (the OCR'd frame
with the words boxed) and ``evidence.json`` (every word, its box and what it matched).
Evidence holds what was read from the pixels, so it lives in the quarantine tier only.

A curator approves an item (optionally with regions to blank) or rejects it
(``imaging-ingest quarantine approve|reject``). An approval is acted on by the next run of
the collection's DAG: ``discover`` offers the submission again, the early stages re-use
its manifests, screening applies the decision, and verify, register and publish treat the
file like any other, in a new collection version. Only items that screening quarantined
can be approved: they have a de-identified output waiting in staging. Anything else
(a failed de-identification, a leak, an unreadable file) needs a corrected resubmission.

Supporting files (slides, clinical tables) are registered in ``supporting_files``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from imaging_ingest.catalog import Catalog
from imaging_ingest.catalog.curation import QuarantineDecision, SupportingFile
from imaging_ingest.catalog.models import (
    AuditEvent,
    Patient,
    QuarantineItem,
    Submission,
    SubmissionState,
    utcnow,
)
from imaging_ingest.ops.metrics import metrics
from imaging_ingest.screen.pixels import CuratorDecision

__all__ = [
    "APPROVALS_STATE",
    "APPROVABLE_STAGES",
    "APPROVED",
    "PENDING",
    "REJECTED",
    "DecisionError",
    "QuarantineDecisionError",
    "ReviewItem",
    "approve",
    "pending",
    "pending_counts",
    "reject",
    "SupportingRecord",
    "auto_reject",
    "decide",
    "decisions_for",
    "evidence_keys",
    "known_pseudonyms",
    "mark_approvals_published",
    "mark_supporting_published",
    "register_supporting",
    "submissions_with_approvals",
    "supporting_files",
    "unpublished_approvals",
]

#: The submission state of a run that only publishes approved items (its early stages re-use manifests).
APPROVALS_STATE = SubmissionState.APPROVALS
#: Stages whose quarantined items have a de-identified output a curator can approve.
APPROVABLE_STAGES = frozenset({"screen"})


class QuarantineDecisionError(ValueError):
    """A decision that cannot be taken: no such item, already decided the other way, not approvable."""


#: The name the curator commands used first.
DecisionError = QuarantineDecisionError

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
#: Curator notes are kept in the restricted catalog's audit trail; a bound keeps them notes.
MAX_NOTE_LENGTH = 2000


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


@dataclass(frozen=True)
class SupportingRecord:
    kind: str
    pseudonym: str | None
    object_key: str
    tier: str
    size: int
    sha256: str
    md5: str


def evidence_keys(collection_id: str, submission_id: str, file_id: int) -> dict[str, str]:
    """Where an item's files live in the quarantine tier."""
    prefix = f"{collection_id}/{submission_id}/{file_id:06d}"
    return {
        "original": f"{prefix}/original",
        "reason": f"{prefix}/reason.json",
        "evidence.png": f"{prefix}/evidence.png",
        "evidence.json": f"{prefix}/evidence.json",
    }


# -- decisions ----------------------------------------------------------------------------


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


def decide(
    catalog: Catalog,
    item_id: int,
    decision: str,
    user: str,
    note: str | None = None,
    *,
    regions: Sequence[tuple[int, int, int, int]] = (),
    approvals_required: int = 1,
) -> ReviewItem:
    """Record a curator's decision on one quarantined item (``approved`` or ``rejected``).

    Every front end (the command line, the Airflow plugin's page) calls this one function,
    after checking that the user is a curator (``curators.require_curator``).
    Decisions are final: the same decision again is a no-op, the other one is refused.
    Only items that screening quarantined can be approved (they have a de-identified output
    waiting in staging); ``regions`` to blank go with an approval. With
    ``approvals_required`` above 1 (the collection's ``release_approvals``), an approval is
    recorded (audited) but the item stays pending until that many *different* curators
    have approved it; one rejection is enough to refuse it.
    """
    if decision not in (APPROVED, REJECTED):
        raise QuarantineDecisionError(f"decision must be {APPROVED} or {REJECTED}, not {decision!r}")
    user = (user or "").strip()
    if not user:
        raise QuarantineDecisionError("a decision needs the curator's user name")
    if regions and decision != APPROVED:
        raise QuarantineDecisionError("regions go with an approval")
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
        if decision == APPROVED and row.stage not in APPROVABLE_STAGES:
            raise QuarantineDecisionError(
                f"item {item_id} was quarantined at stage '{row.stage}' and has no de-identified output to publish; "
                "only items quarantined by screening can be approved (resubmit a corrected file instead)"
            )
        object_id = f"quarantine/{row.collection_id}/{row.submission_id}/{row.file_id:06d}"
        if decision == APPROVED and approvals_required > 1:
            earlier = _approvers(s, object_id)
            if user in earlier:
                raise QuarantineDecisionError(
                    f"you already approved item {item_id}; a different curator must give approval "
                    f"{len(earlier) + 1} of {approvals_required}"
                )
            s.add(AuditEvent(event_type=APPROVAL_EVENT, agent=f"curator:{user}",
                             outcome=f"{len(earlier) + 1}/{approvals_required}", object_id=object_id,
                             collection_id=row.collection_id, detail=note))
            if len(earlier) + 1 < approvals_required:
                s.flush()
                return ReviewItem.of(row)
        row.state, row.decided_at, row.decided_by = decision, utcnow(), user
        s.add(
            QuarantineDecision(
                item_id=row.id,
                state=decision,
                regions=json.dumps([list(r) for r in regions]) if regions else None,
                note=note,
                decided_by=user,
            )
        )
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


#: The audit event of one curator's approval under a two-person rule (the final one is a quarantine-review too).
APPROVAL_EVENT = "quarantine-approval"


def _approvers(session: Any, object_id: str) -> set[str]:
    agents = session.scalars(
        select(AuditEvent.agent).where(AuditEvent.event_type == APPROVAL_EVENT, AuditEvent.object_id == object_id)
    )
    return {a.removeprefix("curator:") for a in agents}


def approve(
    catalog: Catalog, item_id: int, user: str, note: str | None = None, *,
    regions: Sequence[tuple[int, int, int, int]] = (), approvals_required: int = 1,
) -> ReviewItem:
    """Approve a quarantined file for release (after review, optionally with regions to blank)."""
    return decide(catalog, item_id, APPROVED, user, note, regions=regions, approvals_required=approvals_required)


def reject(catalog: Catalog, item_id: int, user: str, note: str | None = None) -> ReviewItem:
    """Reject a quarantined file: it is never published."""
    return decide(catalog, item_id, REJECTED, user, note)


def auto_reject(catalog: Catalog, submission_id: str, file_ids: Iterable[int], by: str) -> int:
    """Mark items rejected by policy (e.g. DICOM WSI labels under the 'drop' policy): no curator needed."""
    wanted = set(file_ids)
    if not wanted:
        return 0
    count = 0
    with catalog.session() as s:
        for item in s.scalars(
            select(QuarantineItem).where(QuarantineItem.submission_id == submission_id, QuarantineItem.state == "pending")
        ):
            if item.file_id in wanted:
                item.state, item.decided_at, item.decided_by = "rejected", utcnow(), by
                s.add(QuarantineDecision(item_id=item.id, state="rejected", decided_by=by, note="policy"))
                count += 1
    return count


def decisions_for(catalog: Catalog, submission_id: str) -> dict[int, CuratorDecision]:
    """Every decided item of a submission, by file id, as screening applies it."""
    out: dict[int, CuratorDecision] = {}
    with catalog.session() as s:
        rows = s.execute(
            select(QuarantineItem, QuarantineDecision)
            .join(QuarantineDecision, QuarantineDecision.item_id == QuarantineItem.id, isouter=True)
            .where(QuarantineItem.submission_id == submission_id, QuarantineItem.state != "pending")
        ).all()
        for item, decision in rows:
            boxes = json.loads(decision.regions) if decision and decision.regions else []
            regions = tuple((int(x), int(y), int(w), int(h)) for x, y, w, h in boxes)
            out[item.file_id] = CuratorDecision(item.state, regions, item.decided_by)
    return out


def unpublished_approvals(catalog: Catalog, collection_id: str) -> dict[str, list[int]]:
    """Approved items whose file has not been published yet, by submission id."""
    out: dict[str, list[int]] = {}
    with catalog.session() as s:
        rows = s.execute(
            select(QuarantineItem.submission_id, QuarantineItem.file_id)
            .join(QuarantineDecision, QuarantineDecision.item_id == QuarantineItem.id)
            .where(
                QuarantineItem.collection_id == collection_id,
                QuarantineItem.state == "approved",
                QuarantineDecision.published_version.is_(None),
            )
            .order_by(QuarantineItem.submission_id, QuarantineItem.file_id)
        ).all()
    for submission_id, file_id in rows:
        out.setdefault(submission_id, []).append(file_id)
    return out


def submissions_with_approvals(catalog: Catalog, collection_id: str) -> list[str]:
    """Published submissions that have approved items waiting to be published, oldest first."""
    waiting = unpublished_approvals(catalog, collection_id)
    if not waiting:
        return []
    with catalog.session() as s:
        rows = s.scalars(
            select(Submission).where(Submission.id.in_(list(waiting))).order_by(Submission.created_at)
        ).all()
        return [r.id for r in rows]


def mark_approvals_published(catalog: Catalog, submission_id: str, file_ids: Iterable[int], version: int) -> int:
    published = set(file_ids)
    count = 0
    with catalog.session() as s:
        for item, decision in s.execute(
            select(QuarantineItem, QuarantineDecision)
            .join(QuarantineDecision, QuarantineDecision.item_id == QuarantineItem.id)
            .where(QuarantineItem.submission_id == submission_id, QuarantineItem.state == "approved")
        ).all():
            if item.file_id in published and decision.published_version is None:
                decision.published_version = version
                count += 1
    return count


# -- patients and supporting files ---------------------------------------------------------


def known_pseudonyms(catalog: Catalog, collection_id: str, id_hashes: Iterable[str]) -> dict[str, str]:
    """Pseudonyms of patients the collection already knows (never creates one)."""
    wanted = sorted(set(id_hashes))
    if not wanted:
        return {}
    with catalog.session() as s:
        return dict(
            s.execute(
                select(Patient.id_hash, Patient.pseudonym).where(
                    Patient.collection_id == collection_id, Patient.id_hash.in_(wanted)
                )
            ).all()
        )


def register_supporting(
    catalog: Catalog, collection_id: str, submission_id: str, records: Iterable[SupportingRecord]
) -> int:
    """Upsert published supporting files by object key; return how many were new."""
    new = 0
    with catalog.session() as s:
        existing = {
            row.object_key: row
            for row in s.scalars(select(SupportingFile).where(SupportingFile.collection_id == collection_id))
        }
        for r in records:
            if r.object_key in existing:
                continue
            s.add(
                SupportingFile(
                    collection_id=collection_id,
                    submission_id=submission_id,
                    kind=r.kind,
                    pseudonym=r.pseudonym,
                    object_key=r.object_key,
                    tier=r.tier,
                    size=r.size,
                    sha256=r.sha256,
                    md5=r.md5,
                )
            )
            new += 1
    return new


def mark_supporting_published(catalog: Catalog, collection_id: str, keys: Iterable[str], version: int) -> None:
    wanted = set(keys)
    with catalog.session() as s:
        for row in s.scalars(
            select(SupportingFile).where(
                SupportingFile.collection_id == collection_id, SupportingFile.published_version.is_(None)
            )
        ):
            if row.object_key in wanted:
                row.published_version = version


def supporting_files(catalog: Catalog, collection_id: str) -> list[SupportingFile]:
    with catalog.session() as s:
        return list(
            s.scalars(
                select(SupportingFile).where(SupportingFile.collection_id == collection_id).order_by(SupportingFile.object_key)
            )
        )
