"""Collections and submissions: discovery, claims, states, and patient pseudonyms."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from imaging_ingest.catalog.base import CatalogBase, audit_event, patients_by_hash
from imaging_ingest.catalog.models import (
    Collection,
    DropObservation,
    EventOutcome,
    EventType,
    Patient,
    Submission,
    SubmissionState,
    utcnow,
)
from imaging_ingest.catalog.types import (
    ClaimOutcome,
    InvalidTransition,
)
from imaging_ingest.config import CollectionConfig

__all__ = ["SubmissionsMixin"]


#: The PREMIS event type recorded when a submission enters each state.
_STATE_EVENTS = {
    SubmissionState.DISCOVERED: EventType.INGESTION,
    SubmissionState.CLAIMED: EventType.INGESTION,
    SubmissionState.STAGED: EventType.INGESTION,
    SubmissionState.INVENTORIED: EventType.VALIDATION,
    SubmissionState.DEIDENTIFIED: EventType.DEIDENTIFICATION,
    SubmissionState.SCREENED: EventType.DEIDENTIFICATION,
    SubmissionState.VERIFIED: EventType.VALIDATION,
    SubmissionState.REGISTERED: EventType.INGESTION,
    SubmissionState.PUBLISHED: EventType.PUBLICATION,
    SubmissionState.FAILED: EventType.INGESTION,
    SubmissionState.APPROVALS: EventType.INGESTION,
}


class SubmissionsMixin(CatalogBase):
    """Catalog operations on collections and submissions."""

    def ensure_collection(self, config: CollectionConfig) -> None:
        with self.session() as s:
            row = s.get(Collection, config.id)
            if row is None:
                s.add(
                    Collection(
                        id=config.id, title=config.title, license=config.license.value, tier=config.tier
                    )
                )
            else:
                row.title, row.license, row.tier = config.title, config.license.value, config.tier

    def collection(self, collection_id: str) -> Collection | None:
        with self.session() as s:
            return s.get(Collection, collection_id)

    def collections(self) -> list[Collection]:
        with self.session() as s:
            return list(s.scalars(select(Collection).order_by(Collection.id)))

    def observe(self, collection_id: str, name: str, fingerprint: str) -> bool:
        """Record a listing; True when it equals the previous poll's (the submission is stable)."""
        with self.session() as s:
            row = s.get(DropObservation, (collection_id, name))
            if row is None:
                s.add(DropObservation(collection_id=collection_id, name=name, fingerprint=fingerprint))
                return False
            stable = row.fingerprint == fingerprint
            row.fingerprint, row.seen_at = fingerprint, utcnow()
            return stable

    def discover(
        self, collection_id: str, submission_id: str, name: str, source_url: str, fingerprint: str
    ) -> str:
        """Record a complete submission seen in the drop; return its current state."""
        with self.session() as s:
            row = s.get(Submission, submission_id)
            if row is not None:
                return row.state
            s.add(
                Submission(
                    id=submission_id,
                    collection_id=collection_id,
                    name=name,
                    source_url=source_url,
                    fingerprint=fingerprint,
                    state=SubmissionState.DISCOVERED,
                    discovered_at=utcnow(),
                )
            )
            s.add(
                audit_event(
                    EventType.INGESTION, "discover", "success", submission_id, collection_id, "submission"
                )
            )
        return SubmissionState.DISCOVERED

    def claim(self, submission_id: str) -> ClaimOutcome:
        """Move a discovered (or failed) submission to claimed; any other state is left as it is.

        A second claim is therefore a no-op, and a published submission stays published.
        """
        with self.session() as s:
            row = s.get(Submission, submission_id)
            if row is None:
                raise KeyError(f"unknown submission {submission_id}")
            if row.state not in (SubmissionState.DISCOVERED, SubmissionState.FAILED):
                return ClaimOutcome(submission_id, row.state, created=False)
            row.state = SubmissionState.CLAIMED
            row.claimed_at = utcnow()
            s.add(
                audit_event(
                    EventType.INGESTION, "claim", "success", submission_id, row.collection_id, "submission"
                )
            )
        return ClaimOutcome(submission_id, SubmissionState.CLAIMED, created=True)

    def submission(self, submission_id: str) -> Submission | None:
        with self.session() as s:
            return s.get(Submission, submission_id)

    def submissions(self, collection_id: str) -> list[Submission]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Submission)
                    .where(Submission.collection_id == collection_id)
                    .order_by(Submission.created_at)
                )
            )

    def set_state(
        self, submission_id: str, state: str, *, error: str | None = None, **counts: int | None
    ) -> None:
        """Move a submission to ``state``, stamping ``<state>_at`` and recording an audit event.

        The state machine: states follow ``SubmissionState.ORDER``; ``failed`` may follow any
        state and any state may follow ``failed`` (a resume); going back to an earlier state
        is a rerun (allowed, and recorded as one). ``published`` can only be entered from
        ``registered``: nothing is published that the catalog has not registered.
        """
        if state not in SubmissionState.ALL:
            raise InvalidTransition(f"unknown submission state {state!r}")
        with self.session() as s:
            row = s.get(Submission, submission_id)
            if row is None:
                raise KeyError(f"unknown submission {submission_id}")
            previous = row.state
            if state == SubmissionState.PUBLISHED and previous not in (
                SubmissionState.REGISTERED,
                SubmissionState.PUBLISHED,
            ):
                raise InvalidTransition(
                    f"submission {submission_id} is {previous}: only a registered submission can be published"
                )
            rerun = (
                state not in SubmissionState.OUT_OF_ORDER
                and previous not in SubmissionState.OUT_OF_ORDER
                and SubmissionState.ORDER.index(state) < SubmissionState.ORDER.index(previous)
            )
            now = utcnow()
            row.state = state
            row.error = error
            setattr(row, f"{state}_at", now)
            for name, value in counts.items():
                setattr(row, name, value)
            detail = error or (f"rerun: was {previous}" if rerun else None)
            outcome = EventOutcome.FAILURE if state == SubmissionState.FAILED else EventOutcome.SUCCESS
            s.add(
                audit_event(
                    _STATE_EVENTS[state],
                    state,
                    outcome,
                    submission_id,
                    row.collection_id,
                    "submission",
                    detail,
                )
            )

    def assign_pseudonyms(self, collection_id: str, prefix: str, id_hashes: Iterable[str]) -> dict[str, str]:
        """Return the pseudonym of each patient, creating new ones in a deterministic order.

        New patients are numbered in the order of their keyed hashes, so that the same
        submission into an empty catalog always yields the same pseudonyms.
        """
        wanted = sorted(set(id_hashes))
        with self.session() as s:
            known: dict[str, str] = patients_by_hash(s, collection_id, wanted, Patient.pseudonym)
            count = (
                s.scalar(
                    select(func.count()).select_from(Patient).where(Patient.collection_id == collection_id)
                )
                or 0
            )
            for id_hash in wanted:
                if id_hash in known:
                    continue
                count += 1
                pseudonym = f"{prefix}-{count:04d}"
                s.add(Patient(collection_id=collection_id, pseudonym=pseudonym, id_hash=id_hash))
                known[id_hash] = pseudonym
        return {h: known[h] for h in wanted}
