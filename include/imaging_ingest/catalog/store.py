"""The catalog's operations, as the pipeline and the curator CLI use them.

Each method is one transaction. Writes are idempotent (upserts keyed by de-identified
UIDs or submission ids), so a task that is retried after a crash converges to the same
rows instead of duplicating them.

Every query the pipeline runs per submission is keyed by an index (collection plus a UID,
hash, key or version number); ``bench/catalog`` checks that with ``EXPLAIN`` on a catalog
of five million instances.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from imaging_ingest.catalog import migrate
from imaging_ingest.catalog.curation import SupportingFile
from imaging_ingest.catalog.models import (
    AuditEvent,
    Collection,
    CollectionVersion,
    DropObservation,
    EventOutcome,
    EventType,
    Instance,
    Patient,
    QuarantineItem,
    Series,
    Study,
    Submission,
    SubmissionState,
    VersionKind,
    utcnow,
)
from imaging_ingest.config import CollectionConfig
from imaging_ingest.core.records import chunks

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

#: Rows per IN (...) list: well under SQLite's bound-parameter limit.
CHUNK = 500
#: How long a SQLite catalog connection waits for another's lock.
SQLITE_BUSY_MS = 30_000

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


class InvalidTransition(ValueError):
    """A submission state change the state machine does not allow."""


class CatalogOutOfSync(RuntimeError):
    """The catalog and the object store disagree in a way the pipeline must not paper over."""


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


@dataclass(frozen=True)
class RegisteredObject:
    """An instance row as publication needs it: which key holds which bytes, and its span."""

    id: int
    sop_uid: str
    sha256: str
    object_key: str
    submission_id: str
    published_version: int | None
    retired_version: int | None

    @property
    def live(self) -> bool:
        """Pending publication or listed in the latest version."""
        return self.retired_version is None


@dataclass(frozen=True)
class Member:
    """One object of a collection version, with its place in the patient/study/series tree."""

    key: str
    size: int
    sha256: str
    md5: str
    tier: str
    patient: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str | None


@dataclass(frozen=True)
class FixityTarget:
    """A published object to re-verify: where it is and what it must hash to."""

    collection_id: str
    key: str
    tier: str
    size: int
    sha256: str
    md5: str


def replacement_key(object_key: str, sha256: str) -> str:
    """The key of a replacement object: the first key with a content discriminator before the suffix.

    ``demo/1.2/3.4/5.6.dcm`` with new bytes becomes ``demo/1.2/3.4/5.6.<sha256[:16]>.dcm``, so a
    replacement never overwrites the object an earlier version lists, and the same bytes
    always get the same key (reruns stay idempotent).
    """
    stem, dot, suffix = object_key.rpartition(".")
    if not dot or "/" in suffix:
        return f"{object_key}.{sha256[:16]}"
    return f"{stem}.{sha256[:16]}.{suffix}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    _use_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting out concurrent openers.

    SQLite answers a journal-mode switch that meets another connection's lock with
    "database is locked" at once, without its busy handler; several processes opening a
    new catalog together (task workers, the API) would fail. So: retry within the busy
    timeout. WAL is a property of the file, so only the first openers ever race.
    """
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _patients_by_hash(s: Session, collection_id: str, id_hashes: Sequence[str], column: Any) -> dict[str, Any]:
    """``id_hash -> column`` for the collection's patients among these keyed hashes."""
    found: dict[str, Any] = {}
    for chunk in chunks(id_hashes, CHUNK):
        found.update(
            s.execute(
                select(Patient.id_hash, column).where(Patient.collection_id == collection_id, Patient.id_hash.in_(chunk))
            ).tuples().all()
        )
    return found


def _live_span(version: int) -> Any:
    """Instances listed in ``version``: published at or before it and not retired by then."""
    return and_(
        Instance.published_version.is_not(None),
        Instance.published_version <= version,
        or_(Instance.retired_version.is_(None), Instance.retired_version > version),
    )


class Catalog:
    """The archive's catalog database (SQLite embedded, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> Catalog:
        """Open a catalog; with ``create`` (the default) its schema is migrated to the newest revision."""
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        catalog = cls(engine)
        if create:
            catalog.upgrade()
        return catalog

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up (Alembic); a no-op at head."""
        migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str) -> None:
        migrate.downgrade(self.engine, revision)

    def schema_revision(self) -> str | None:
        return migrate.current_revision(self.engine)

    def create_schema(self) -> None:
        """Kept for callers of the pre-migration API: the same as ``upgrade()``."""
        self.upgrade()

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
                    discovered_at=utcnow(),
                )
            )
            s.add(_event(EventType.INGESTION, "discover", "success", submission_id, collection_id, "submission"))
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
            s.add(_event(EventType.INGESTION, "claim", "success", submission_id, row.collection_id, "submission"))
        return ClaimOutcome(submission_id, SubmissionState.CLAIMED, created=True)

    def submission(self, submission_id: str) -> Submission | None:
        with self.session() as s:
            return s.get(Submission, submission_id)

    def submissions(self, collection_id: str) -> list[Submission]:
        with self.session() as s:
            return list(
                s.scalars(select(Submission).where(Submission.collection_id == collection_id).order_by(Submission.created_at))
            )

    def set_state(self, submission_id: str, state: str, *, error: str | None = None, **counts: int | None) -> None:
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
            if state == SubmissionState.PUBLISHED and previous not in (SubmissionState.REGISTERED, SubmissionState.PUBLISHED):
                raise InvalidTransition(f"submission {submission_id} is {previous}: only a registered submission can be published")
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
            s.add(_event(_STATE_EVENTS[state], state, outcome, submission_id, row.collection_id, "submission", detail))

    # -- patients -------------------------------------------------------------------------

    def assign_pseudonyms(self, collection_id: str, prefix: str, id_hashes: Iterable[str]) -> dict[str, str]:
        """Return the pseudonym of each patient, creating new ones in a deterministic order.

        New patients are numbered in the order of their keyed hashes, so that the same
        submission into an empty catalog always yields the same pseudonyms.
        """
        wanted = sorted(set(id_hashes))
        with self.session() as s:
            known: dict[str, str] = _patients_by_hash(s, collection_id, wanted, Patient.pseudonym)
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
        """Upsert patients' studies, series and instances; return how many instance rows were new.

        An instance whose bytes the catalog already holds (same SOP Instance UID, same
        SHA-256, pending or listed) is not registered again. New bytes for a known SOP
        Instance UID are a replacement: a new row under ``replacement_key`` that the next
        version lists instead of the old one (see ``apply_release``).
        """
        if not records:
            return 0
        new_rows: list[dict[str, Any]] = []
        with self.session() as s:
            id_hashes = sorted({r.id_hash for r in records})
            patients: dict[str, int] = _patients_by_hash(s, collection_id, id_hashes, Patient.id)
            studies: dict[str, int] = {}
            series: dict[str, int] = {}
            existing = self._objects_by_sop(s, collection_id, sorted({r.sop_uid for r in records}))
            stale: list[int] = []
            seen: set[str] = set()
            for r in records:
                if r.sop_uid in seen:
                    continue
                seen.add(r.sop_uid)
                if r.study_uid not in studies:
                    studies[r.study_uid] = self._upsert_study(s, collection_id, r, patients[r.id_hash])
                if r.series_uid not in series:
                    series[r.series_uid] = self._upsert_series(s, collection_id, submission_id, r, studies[r.study_uid])
                rows = existing.get(r.sop_uid, [])
                if any(o.sha256 == r.sha256 and o.live for o in rows):
                    continue
                stale += [
                    o.id
                    for o in rows
                    if o.published_version is None and o.live and o.submission_id == submission_id
                ]
                same_bytes = [o for o in rows if o.sha256 == r.sha256]
                if same_bytes:
                    key = same_bytes[0].object_key  # bytes an older version listed come back: same object
                elif any(o.object_key == r.object_key for o in rows):
                    key = replacement_key(r.object_key, r.sha256)
                else:
                    key = r.object_key
                new_rows.append(
                    {
                        "collection_id": collection_id,
                        "sop_uid": r.sop_uid,
                        "sop_class_uid": r.sop_class_uid,
                        "series_id": series[r.series_uid],
                        "object_key": key,
                        "tier": r.tier,
                        "size": r.size,
                        "sha256": r.sha256,
                        "md5": r.md5,
                        "submission_id": submission_id,
                        "created_at": utcnow(),
                    }
                )
            for chunk in chunks(stale, CHUNK):
                s.execute(delete(Instance).where(Instance.id.in_(chunk)))
            if new_rows:
                s.execute(insert(Instance), new_rows)
                detail = f"submission {submission_id}"
                self._add_events(
                    s,
                    [
                        _event_row(EventType.DEIDENTIFICATION, "deidentify", "success", row["object_key"], collection_id,
                                   "object", f"de-identified and leak-scanned; {detail}")
                        for row in new_rows
                    ]
                    + [
                        _event_row(EventType.INGESTION, "register", "success", row["object_key"], collection_id,
                                   "object", f"registered; {detail}; sha256 {row['sha256']}")
                        for row in new_rows
                    ],
                )
        return len(new_rows)

    @staticmethod
    def _objects_by_sop(s: Session, collection_id: str, sop_uids: Sequence[str]) -> dict[str, list[RegisteredObject]]:
        found: dict[str, list[RegisteredObject]] = defaultdict(list)
        for chunk in chunks(sop_uids, CHUNK):
            for row in s.execute(
                select(
                    Instance.id,
                    Instance.sop_uid,
                    Instance.sha256,
                    Instance.object_key,
                    Instance.submission_id,
                    Instance.published_version,
                    Instance.retired_version,
                ).where(Instance.collection_id == collection_id, Instance.sop_uid.in_(chunk))
            ):
                found[row.sop_uid].append(RegisteredObject(*row))
        return found

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

    def registered_objects(self, collection_id: str, sop_uids: Iterable[str]) -> dict[str, list[RegisteredObject]]:
        """Every instance row of these SOP Instance UIDs (pending, listed and retired)."""
        with self.session() as s:
            return dict(self._objects_by_sop(s, collection_id, sorted(set(sop_uids))))

    def instances(self, collection_id: str, sop_uids: Iterable[str] | None = None) -> list[Instance]:
        """Instance rows of a collection (every span: pending, listed and retired)."""
        with self.session() as s:
            query = select(Instance).where(Instance.collection_id == collection_id)
            if sop_uids is None:
                return list(s.scalars(query.order_by(Instance.object_key, Instance.id)))
            rows: list[Instance] = []
            for chunk in chunks(sorted(set(sop_uids)), CHUNK):
                rows += s.scalars(query.where(Instance.sop_uid.in_(chunk)))
            return sorted(rows, key=lambda i: (i.object_key, i.id))

    # -- versions -------------------------------------------------------------------------

    def latest_version(self, collection_id: str) -> CollectionVersion | None:
        with self.session() as s:
            return s.scalar(
                select(CollectionVersion)
                .where(CollectionVersion.collection_id == collection_id)
                .order_by(CollectionVersion.number.desc())
                .limit(1)
            )

    def version(self, collection_id: str, number: int) -> CollectionVersion | None:
        with self.session() as s:
            return s.scalar(
                select(CollectionVersion).where(
                    CollectionVersion.collection_id == collection_id, CollectionVersion.number == number
                )
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

    def members_query(self, collection_id: str, version: int) -> Any:
        """The SELECT behind :meth:`members` (the benchmark EXPLAINs it)."""
        return (
            select(
                Instance.object_key,
                Instance.size,
                Instance.sha256,
                Instance.md5,
                Instance.tier,
                Patient.pseudonym,
                Study.uid,
                Series.uid,
                Instance.sop_uid,
                Instance.sop_class_uid,
                Series.modality,
            )
            # The collection predicates on every table let each join use its (collection_id, ...) index.
            .join(Series, and_(Series.id == Instance.series_id, Series.collection_id == collection_id))
            .join(Study, and_(Study.id == Series.study_id, Study.collection_id == collection_id))
            .join(Patient, and_(Patient.id == Study.patient_id, Patient.collection_id == collection_id))
            .where(Instance.collection_id == collection_id, _live_span(version))
            .order_by(Instance.object_key)
        )

    def members(self, collection_id: str, version: int) -> Iterator[Member]:
        """The objects the catalog lists in a version, by key (streamed: a version may be large)."""
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=5000).execute(self.members_query(collection_id, version))
            for row in result:
                yield Member(*row)

    def apply_release(
        self,
        collection_id: str,
        number: int,
        release_key: str,
        keys: Iterable[str],
        *,
        total_bytes: int,
        submission_id: str | None = None,
        kind: str = VersionKind.SUBMISSION,
        reason: str | None = None,
        doi: str | None = None,
        changed_series: Iterable[str] = (),
        agent: str = "publish",
    ) -> bool:
        """Make the catalog list exactly ``keys`` as version ``number``; False if it already does.

        Rows listed in the previous version but not in ``keys`` are retired at ``number``;
        pending rows whose keys are listed are published at ``number``. Called after the
        version's ``release.json`` is written, so a release the catalog missed (a crash in
        between) can be applied later from the release itself.
        """
        listed = set(keys)
        retired_type = EventType.WITHDRAWAL if kind == VersionKind.WITHDRAWAL else EventType.REPLACEMENT
        with self.session() as s:
            if s.scalar(
                select(CollectionVersion.id).where(
                    CollectionVersion.collection_id == collection_id, CollectionVersion.number == number
                )
            ):
                return False
            latest = s.scalar(
                select(func.max(CollectionVersion.number)).where(CollectionVersion.collection_id == collection_id)
            )
            if latest is not None and number != latest + 1:
                raise CatalogOutOfSync(f"{collection_id}: version {number} cannot follow version {latest}")
            current: dict[str, list[int]] = defaultdict(list)
            for row_id, key in s.execute(
                select(Instance.id, Instance.object_key).where(
                    Instance.collection_id == collection_id,
                    Instance.published_version.is_not(None),
                    Instance.retired_version.is_(None),
                )
            ).tuples():
                current[key].append(row_id)
            retire = {key: ids for key, ids in current.items() if key not in listed}
            missing = sorted(listed - current.keys())
            pending: dict[str, int] = {}
            if missing:  # every registered, unpublished row of the collection: one indexed range
                for row_id, key in s.execute(
                    select(Instance.id, Instance.object_key)
                    .where(
                        Instance.collection_id == collection_id,
                        Instance.published_version.is_(None),
                        Instance.retired_version.is_(None),
                    )
                    .order_by(Instance.id)
                ).tuples():
                    pending.setdefault(key, row_id)
            publish = {key: pending[key] for key in missing if key in pending}
            unknown = [key for key in missing if key not in pending]
            if unknown:
                raise CatalogOutOfSync(
                    f"{collection_id} version {number} lists {len(unknown)} object(s) the catalog has not "
                    f"registered, e.g. {unknown[0]}"
                )
            retire_ids = sorted(i for ids in retire.values() for i in ids)
            for chunk in chunks(retire_ids, CHUNK):
                s.execute(update(Instance).where(Instance.id.in_(chunk)).values(retired_version=number))
            publish_ids = sorted(publish.values())
            for chunk in chunks(publish_ids, CHUNK):
                s.execute(update(Instance).where(Instance.id.in_(chunk)).values(published_version=number))
            s.add(
                CollectionVersion(
                    collection_id=collection_id,
                    number=number,
                    release_key=release_key,
                    objects=len(listed),
                    bytes=total_bytes,
                    submission_id=submission_id,
                    kind=str(kind),
                    reason=reason,
                    doi=doi,
                )
            )
            events = [
                _event_row(EventType.PUBLICATION, agent, "success", release_key, collection_id, "version",
                           f"version {number}: {len(listed)} objects, {len(publish)} new, {len(retire)} dropped")
            ]
            events += [
                _event_row(retired_type, agent, "success", uid, collection_id, "series", reason)
                for uid in sorted(set(changed_series))
            ]
            events += [
                _event_row(EventType.PUBLICATION, agent, "success", key, collection_id, "object", f"first listed in version {number}")
                for key in sorted(publish)
            ]
            events += [
                _event_row(retired_type, agent, "success", key, collection_id, "object", f"not listed from version {number}")
                for key in sorted(retire)
            ]
            self._add_events(s, events)
        return True

    # -- fixity ---------------------------------------------------------------------------

    def fixity_query(self, collection_id: str, *, version: int | None = None, limit: int | None = None) -> Any:
        """Published instances, least recently checked first (one indexed range per collection)."""
        query = select(
            Instance.object_key, Instance.tier, Instance.size, Instance.sha256, Instance.md5, Instance.fixity_checked_at
        ).where(Instance.collection_id == collection_id, Instance.published_version.is_not(None))
        if version is not None:
            query = query.where(Instance.published_version == version)
        query = query.order_by(Instance.fixity_checked_at.asc().nulls_first(), Instance.object_key)
        if limit is not None:
            query = query.limit(limit)
        return query

    def _supporting_fixity_query(self, collection_id: str, *, version: int | None, limit: int | None) -> Any:
        """The same for published supporting files (de-identified slides and clinical tables)."""
        query = select(
            SupportingFile.object_key,
            SupportingFile.tier,
            SupportingFile.size,
            SupportingFile.sha256,
            SupportingFile.md5,
            SupportingFile.fixity_checked_at,
        ).where(SupportingFile.collection_id == collection_id, SupportingFile.published_version.is_not(None))
        if version is not None:
            query = query.where(SupportingFile.published_version == version)
        query = query.order_by(SupportingFile.fixity_checked_at.asc().nulls_first(), SupportingFile.object_key)
        if limit is not None:
            query = query.limit(limit)
        return query

    def fixity_targets(self, collection_id: str, *, version: int | None = None, limit: int | None = None) -> list[FixityTarget]:
        """Published objects (of every version), least recently checked first; one per key.

        ``version`` restricts them to the objects first listed in that version (what a
        publication just copied); ``limit`` takes the first ones (a daily sample). DICOM
        instances and supporting files are each read least-checked-first with the limit,
        then merged, so the instance query keeps using its index.
        """
        with self.session() as s:
            rows = [
                *s.execute(self.fixity_query(collection_id, version=version, limit=limit)),
                *s.execute(self._supporting_fixity_query(collection_id, version=version, limit=limit)),
            ]
        never = datetime.min
        rows.sort(key=lambda r: (r[5] is not None, r[5] or never, r[0]))
        targets: dict[str, FixityTarget] = {}
        for key, tier, size, sha256, md5, _checked in rows[:limit] if limit is not None else rows:
            targets.setdefault(key, FixityTarget(collection_id, key, tier, int(size), sha256, md5))
        return list(targets.values())

    def published_object_count(self, collection_id: str) -> int:
        with self.session() as s:
            instances = s.scalar(
                select(func.count(func.distinct(Instance.object_key))).where(
                    Instance.collection_id == collection_id, Instance.published_version.is_not(None)
                )
            )
            supporting = s.scalar(
                select(func.count(SupportingFile.id)).where(
                    SupportingFile.collection_id == collection_id, SupportingFile.published_version.is_not(None)
                )
            )
            return int(instances or 0) + int(supporting or 0)

    def record_fixity(
        self, collection_id: str, results: Iterable[tuple[str, bool, str]], *, agent: str = "fixity-audit"
    ) -> None:
        """Record fixity checks: (object key, passed, detail) each; stamps the objects' last check."""
        results = list(results)
        now = utcnow()
        with self.session() as s:
            self._add_events(
                s,
                [
                    _event_row(EventType.FIXITY_CHECK, agent, "success" if ok else "failure", key, collection_id, "object", detail, now)
                    for key, ok, detail in results
                ],
            )
            keys = sorted({key for key, _, _ in results})
            for chunk in chunks(keys, CHUNK):
                for table in (Instance, SupportingFile):
                    s.execute(
                        update(table)
                        .where(table.collection_id == collection_id, table.object_key.in_(chunk))
                        .values(fixity_checked_at=now)
                    )

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
        self,
        event_type: str,
        agent: str,
        outcome: str,
        object_id: str,
        collection_id: str | None,
        detail: str | None = None,
        object_type: str = "object",
    ) -> None:
        with self.session() as s:
            s.add(_event(event_type, agent, outcome, object_id, collection_id, object_type, detail))

    def audit_events(self, object_id: str | None = None, limit: int = 1000) -> list[AuditEvent]:
        with self.session() as s:
            query = select(AuditEvent)
            if object_id:
                query = query.where(AuditEvent.object_id == object_id)
            return list(s.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))

    def audit_trail(self, target: str, collection_id: str | None = None) -> list[AuditEvent]:
        """Every event of an object key, a SOP Instance UID or a series UID (with its objects), oldest first."""
        with self.session() as s:
            ids = {target}
            series_query = select(Series.id, Series.uid).where(Series.uid == target)
            instance_query = select(Instance.object_key).where(Instance.sop_uid == target)
            if collection_id:
                series_query = series_query.where(Series.collection_id == collection_id)
                instance_query = instance_query.where(Instance.collection_id == collection_id)
            series_ids = [row_id for row_id, _ in s.execute(series_query).tuples()]
            if series_ids:
                ids |= set(s.scalars(select(Instance.object_key).where(Instance.series_id.in_(series_ids))))
            ids |= set(s.scalars(instance_query))
            events: list[AuditEvent] = []
            for chunk in chunks(sorted(ids), CHUNK):
                query = select(AuditEvent).where(AuditEvent.object_id.in_(chunk))
                if collection_id:
                    query = query.where(AuditEvent.collection_id == collection_id)
                events += s.scalars(query)
            return sorted(events, key=lambda e: (e.at, e.id))

    @staticmethod
    def _add_events(s: Session, rows: list[dict[str, Any]]) -> None:
        for chunk in chunks(rows, 5000):
            s.execute(insert(AuditEvent), list(chunk))


def _event(
    event_type: str,
    agent: str,
    outcome: str,
    object_id: str,
    collection_id: str | None,
    object_type: str = "object",
    detail: str | None = None,
) -> AuditEvent:
    return AuditEvent(**_event_row(event_type, agent, outcome, object_id, collection_id, object_type, detail))


def _event_row(
    event_type: str,
    agent: str,
    outcome: str,
    object_id: str,
    collection_id: str | None,
    object_type: str = "object",
    detail: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "at": at or utcnow(),
        "event_type": str(event_type),
        "agent": f"imaging-ingest:{agent}",
        "outcome": str(outcome),
        "object_id": object_id,
        "object_type": object_type,
        "collection_id": collection_id,
        "detail": detail,
    }
