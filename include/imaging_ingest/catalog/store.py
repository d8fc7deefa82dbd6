"""The catalog's operations, as the pipeline and the curator CLI use them.

Each method is one transaction. Writes are idempotent (upserts keyed by de-identified
UIDs or submission ids), so a task that is retried after a crash converges to the same
rows instead of duplicating them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..config import CollectionConfig
from .models import (
    AuditEvent,
    Base,
    Collection,
    CollectionVersion,
    DropObservation,
    Instance,
    Patient,
    QuarantineItem,
    Series,
    Study,
    Submission,
    SubmissionState,
    utcnow,
)

__all__ = ["Catalog", "ClaimOutcome", "InstanceRecord"]


@dataclass(frozen=True)
class ClaimOutcome:
    submission_id: str
    state: str
    created: bool

    @property
    def already_published(self) -> bool:
        return self.state == SubmissionState.PUBLISHED


@dataclass(frozen=True)
class InstanceRecord:
    """One published file as the register stage hands it to the catalog (de-identified values only)."""

    pseudonym: str
    id_hash: str
    study_uid: str
    study_date: str | None
    study_description: str | None
    series_uid: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    series_description: str | None
    sop_uid: str
    sop_class_uid: str
    object_key: str
    tier: str
    size: int
    sha256: str
    md5: str


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Catalog:
    """The archive's catalog database (SQLite embedded, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> Catalog:
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        catalog = cls(engine)
        if create:
            catalog.create_schema()
        return catalog

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # -- collections and submissions --------------------------------------------------------

    def ensure_collection(self, config: CollectionConfig) -> None:
        with self.session() as s:
            row = s.get(Collection, config.id)
            if row is None:
                s.add(Collection(id=config.id, title=config.title, license=config.license.value, tier=config.tier))
            else:
                row.title, row.license, row.tier = config.title, config.license.value, config.tier

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

    def discover(self, collection_id: str, submission_id: str, name: str, source_url: str, fingerprint: str) -> str:
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
                )
            )
            s.add(_event("ingestion", "discover", "success", submission_id, collection_id))
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
            s.add(_event("ingestion", "claim", "success", submission_id, row.collection_id))
        return ClaimOutcome(submission_id, SubmissionState.CLAIMED, created=True)

    def submission(self, submission_id: str) -> Submission | None:
        with self.session() as s:
            return s.get(Submission, submission_id)

    def submissions(self, collection_id: str) -> list[Submission]:
        with self.session() as s:
            return list(
                s.scalars(select(Submission).where(Submission.collection_id == collection_id).order_by(Submission.created_at))
            )

    def set_state(self, submission_id: str, state: str, *, error: str | None = None, **counts: int) -> None:
        with self.session() as s:
            row = s.get(Submission, submission_id)
            if row is None:
                raise KeyError(f"unknown submission {submission_id}")
            row.state = state
            row.error = error
            for name, value in counts.items():
                setattr(row, name, value)
            s.add(
                _event(
                    "state-change",
                    state,
                    "failure" if state == SubmissionState.FAILED else "success",
                    submission_id,
                    row.collection_id,
                    error,
                )
            )

    # -- patients -------------------------------------------------------------------------

    def assign_pseudonyms(self, collection_id: str, prefix: str, id_hashes: Iterable[str]) -> dict[str, str]:
        """Return the pseudonym of each patient, creating new ones in a deterministic order.

        New patients are numbered in the order of their keyed hashes, so that the same
        submission into an empty catalog always yields the same pseudonyms.
        """
        wanted = sorted(set(id_hashes))
        with self.session() as s:
            known = dict(
                s.execute(
                    select(Patient.id_hash, Patient.pseudonym).where(
                        Patient.collection_id == collection_id, Patient.id_hash.in_(wanted)
                    )
                ).all()
            )
            count = s.scalar(select(func.count()).select_from(Patient).where(Patient.collection_id == collection_id)) or 0
            for id_hash in wanted:
                if id_hash in known:
                    continue
                count += 1
                pseudonym = f"{prefix}-{count:04d}"
                s.add(Patient(collection_id=collection_id, pseudonym=pseudonym, id_hash=id_hash))
                known[id_hash] = pseudonym
        return {h: known[h] for h in wanted}

    # -- registration ---------------------------------------------------------------------

    def register(self, collection_id: str, submission_id: str, records: Sequence[InstanceRecord]) -> int:
        """Upsert patients' studies, series and instances; return how many instances were new."""
        new = 0
        with self.session() as s:
            patients = dict(
                s.execute(select(Patient.id_hash, Patient.id).where(Patient.collection_id == collection_id)).all()
            )
            studies: dict[str, int] = {}
            series: dict[str, int] = {}
            existing = set(
                s.scalars(
                    select(Instance.sop_uid).where(
                        Instance.collection_id == collection_id,
                        Instance.sop_uid.in_([r.sop_uid for r in records]),
                    )
                )
            )
            for r in records:
                if r.study_uid not in studies:
                    studies[r.study_uid] = self._upsert_study(s, collection_id, r, patients[r.id_hash])
                if r.series_uid not in series:
                    series[r.series_uid] = self._upsert_series(s, collection_id, submission_id, r, studies[r.study_uid])
                if r.sop_uid in existing:
                    continue
                s.add(
                    Instance(
                        collection_id=collection_id,
                        sop_uid=r.sop_uid,
                        sop_class_uid=r.sop_class_uid,
                        series_id=series[r.series_uid],
                        object_key=r.object_key,
                        tier=r.tier,
                        size=r.size,
                        sha256=r.sha256,
                        md5=r.md5,
                        submission_id=submission_id,
                    )
                )
                new += 1
        return new

    @staticmethod
    def _upsert_study(s: Session, collection_id: str, r: InstanceRecord, patient_id: int) -> int:
        row = s.scalar(select(Study).where(Study.collection_id == collection_id, Study.uid == r.study_uid))
        if row is None:
            row = Study(
                collection_id=collection_id,
                uid=r.study_uid,
                patient_id=patient_id,
                study_date=r.study_date,
                description=r.study_description,
            )
            s.add(row)
            s.flush()
        return row.id

    @staticmethod
    def _upsert_series(s: Session, collection_id: str, submission_id: str, r: InstanceRecord, study_id: int) -> int:
        row = s.scalar(select(Series).where(Series.collection_id == collection_id, Series.uid == r.series_uid))
        if row is None:
            row = Series(
                collection_id=collection_id,
                uid=r.series_uid,
                study_id=study_id,
                modality=r.modality,
                body_part=r.body_part,
                manufacturer=r.manufacturer,
                description=r.series_description,
                submission_id=submission_id,
            )
            s.add(row)
            s.flush()
        return row.id

    def instances(self, collection_id: str, sop_uids: Iterable[str] | None = None) -> list[Instance]:
        with self.session() as s:
            query = select(Instance).where(Instance.collection_id == collection_id)
            if sop_uids is not None:
                query = query.where(Instance.sop_uid.in_(list(sop_uids)))
            return list(s.scalars(query.order_by(Instance.object_key)))

    # -- versions -------------------------------------------------------------------------

    def latest_version(self, collection_id: str) -> CollectionVersion | None:
        with self.session() as s:
            return s.scalar(
                select(CollectionVersion)
                .where(CollectionVersion.collection_id == collection_id)
                .order_by(CollectionVersion.number.desc())
                .limit(1)
            )

    def versions(self, collection_id: str) -> list[CollectionVersion]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(CollectionVersion)
                    .where(CollectionVersion.collection_id == collection_id)
                    .order_by(CollectionVersion.number)
                )
            )

    def record_version(
        self,
        collection_id: str,
        number: int,
        release_key: str,
        objects: int,
        size: int,
        submission_id: str | None,
        sop_uids: Iterable[str],
    ) -> None:
        with self.session() as s:
            existing = s.scalar(
                select(CollectionVersion).where(
                    CollectionVersion.collection_id == collection_id, CollectionVersion.number == number
                )
            )
            if existing is None:
                s.add(
                    CollectionVersion(
                        collection_id=collection_id,
                        number=number,
                        release_key=release_key,
                        objects=objects,
                        bytes=size,
                        submission_id=submission_id,
                    )
                )
            uids = list(sop_uids)
            for start in range(0, len(uids), 500):
                for row in s.scalars(
                    select(Instance).where(
                        Instance.collection_id == collection_id,
                        Instance.sop_uid.in_(uids[start : start + 500]),
                        Instance.published_version.is_(None),
                    )
                ):
                    row.published_version = number
            s.add(_event("publication", f"version {number}", "success", release_key, collection_id))

    # -- quarantine and audit -------------------------------------------------------------

    def add_quarantine(
        self,
        collection_id: str,
        submission_id: str,
        items: Iterable[tuple[int, str, str, str, str | None]],
    ) -> int:
        """Record quarantined files: (file_id, source_path, stage, reason, object_key); idempotent."""
        added = 0
        with self.session() as s:
            known = set(s.scalars(select(QuarantineItem.file_id).where(QuarantineItem.submission_id == submission_id)))
            for file_id, source_path, stage, reason, key in items:
                if file_id in known:
                    continue
                s.add(
                    QuarantineItem(
                        collection_id=collection_id,
                        submission_id=submission_id,
                        file_id=file_id,
                        source_path=source_path,
                        stage=stage,
                        reason=reason,
                        object_key=key,
                    )
                )
                added += 1
        return added

    def quarantine_items(self, collection_id: str | None = None, state: str | None = None) -> list[QuarantineItem]:
        with self.session() as s:
            query = select(QuarantineItem)
            if collection_id:
                query = query.where(QuarantineItem.collection_id == collection_id)
            if state:
                query = query.where(QuarantineItem.state == state)
            return list(s.scalars(query.order_by(QuarantineItem.id)))

    def audit(
        self, event_type: str, agent: str, outcome: str, object_id: str, collection_id: str | None, detail: str | None = None
    ) -> None:
        with self.session() as s:
            s.add(_event(event_type, agent, outcome, object_id, collection_id, detail))

    def audit_events(self, object_id: str | None = None, limit: int = 1000) -> list[AuditEvent]:
        with self.session() as s:
            query = select(AuditEvent)
            if object_id:
                query = query.where(AuditEvent.object_id == object_id)
            return list(s.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


def _event(
    event_type: str, agent: str, outcome: str, object_id: str, collection_id: str | None, detail: str | None = None
) -> AuditEvent:
    return AuditEvent(
        event_type=event_type,
        agent=f"imaging-ingest:{agent}",
        outcome=outcome,
        object_id=object_id,
        collection_id=collection_id,
        detail=detail,
    )
