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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from .catalog import Catalog
from .catalog.curation import QuarantineDecision, SupportingFile
from .catalog.models import Patient, QuarantineItem, Submission, SubmissionState, utcnow
from .pixels import CuratorDecision

__all__ = [
    "APPROVALS_STATE",
    "APPROVABLE_STAGES",
    "DecisionError",
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


class DecisionError(ValueError):
    """A decision that cannot be taken (unknown item, wrong state, not approvable)."""


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


def decide(
    catalog: Catalog,
    item_id: int,
    state: str,
    by: str,
    *,
    regions: Sequence[tuple[int, int, int, int]] = (),
    note: str | None = None,
) -> QuarantineItem:
    """Approve or reject a pending item; a decision is final (a second one is refused)."""
    if state not in ("approved", "rejected"):
        raise DecisionError(f"unknown decision {state!r}")
    if regions and state != "approved":
        raise DecisionError("regions go with an approval")
    with catalog.session() as s:
        item = s.get(QuarantineItem, item_id)
        if item is None:
            raise DecisionError(f"no quarantine item {item_id}")
        if item.state != "pending":
            raise DecisionError(f"item {item_id} is already {item.state}")
        if state == "approved" and item.stage not in APPROVABLE_STAGES:
            raise DecisionError(
                f"item {item_id} was quarantined at stage '{item.stage}' and has no de-identified output to publish; "
                "only items quarantined by screening can be approved (resubmit a corrected file instead)"
            )
        item.state, item.decided_at, item.decided_by = state, utcnow(), by
        s.add(
            QuarantineDecision(
                item_id=item.id,
                state=state,
                regions=json.dumps([list(r) for r in regions]) if regions else None,
                note=note,
                decided_by=by,
            )
        )
        s.flush()
        s.expunge(item)
    catalog.audit("curation", f"quarantine-{state}", "success", f"{item.submission_id}/{item.file_id}",
                  item.collection_id, f"by {by}")
    return item


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
