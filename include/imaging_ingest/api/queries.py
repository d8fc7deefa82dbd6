"""Every catalog query the API makes, read-only, in one place.

The catalog's schema belongs to the pipeline and changes with it; keeping the API's
reads here means a schema change touches one module. Rows come back as plain frozen
dataclasses, detached from any session, so that they can be cached and shared between
request threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, or_, select
from sqlalchemy.orm import Session

from ..catalog.models import Collection, CollectionVersion, Instance, Patient, Series, Study, Submission

__all__ = [
    "InstanceRow",
    "SeriesRow",
    "VersionRow",
    "connect",
    "patient_ids_ignoring_case",
    "published_versions",
    "series_instances",
    "series_rows",
    "series_uid_of_instance",
]


@dataclass(frozen=True)
class VersionRow:
    """A published version of a collection, as the catalog records it."""

    collection_id: str
    title: str
    license: str
    tier: str
    number: int
    release_key: str
    objects: int
    bytes: int
    created_at: datetime
    kind: str = "submission"
    doi: str | None = None


@dataclass(frozen=True)
class SeriesRow:
    """One published series of a version, with its study and patient (de-identified values only)."""

    pk: int
    uid: str
    study_uid: str
    study_date: str | None
    study_description: str | None
    patient_id: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    description: str | None
    count: int
    bytes: int
    newest_version: int
    first_key: str
    tier: str
    submitted_at: datetime | None


@dataclass(frozen=True)
class InstanceRow:
    """One instance of a series as a version lists it."""

    object_key: str
    sop_uid: str
    sop_class_uid: str
    tier: str
    size: int
    md5: str
    sha256: str


def _sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connect(url: str) -> Engine:
    """An engine on the catalog for reading: the API creates no table and writes no row."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not Path(database).exists():
            raise ValueError(f"the catalog database {database} does not exist: publish a collection first")
        event.listen(engine, "connect", _sqlite_busy_timeout)
    return engine


def published_versions(engine: Engine) -> list[VersionRow]:
    """Every recorded version of every collection, oldest first within a collection."""
    query = (
        select(
            CollectionVersion.collection_id,
            Collection.title,
            Collection.license,
            Collection.tier,
            CollectionVersion.number,
            CollectionVersion.release_key,
            CollectionVersion.objects,
            CollectionVersion.bytes,
            CollectionVersion.created_at,
            CollectionVersion.kind,
            CollectionVersion.doi,
        )
        .join(Collection, Collection.id == CollectionVersion.collection_id)
        .order_by(CollectionVersion.collection_id, CollectionVersion.number)
    )
    with Session(engine) as session:
        return [VersionRow(*row.tuple()) for row in session.execute(query)]


def _live(version: int) -> Any:
    """Instances listed in ``version``: published at or before it and not retired by then.

    The same span rule the publish stage writes ``release.json`` from (``Catalog.members``),
    answered by the ``(collection_id, published_version, retired_version)`` index.
    """
    return and_(
        Instance.published_version.is_not(None),
        Instance.published_version <= version,
        or_(Instance.retired_version.is_(None), Instance.retired_version > version),
    )


def series_rows(
    engine: Engine,
    collection_id: str,
    version: int,
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str | None = None,
) -> list[SeriesRow]:
    """The series a version lists (optionally one series, one study's or one patient's), by UID.

    One grouped query: counts, sizes and the newest publishing version come from the
    instance rows; a lookup by UID walks the ``(uid, collection_id)`` unique indexes, a
    whole collection the span index.
    """
    query = (
        select(
            Series.id,
            Series.uid,
            Study.uid,
            Study.study_date,
            Study.description,
            Patient.pseudonym,
            Series.modality,
            Series.body_part,
            Series.manufacturer,
            Series.description,
            func.count(Instance.id),
            func.sum(Instance.size),
            func.max(Instance.published_version),
            func.min(Instance.object_key),
            func.min(Instance.tier),
            Submission.created_at,
        )
        .select_from(Instance)
        .join(Series, and_(Series.id == Instance.series_id, Series.collection_id == collection_id))
        .join(Study, and_(Study.id == Series.study_id, Study.collection_id == collection_id))
        .join(Patient, and_(Patient.id == Study.patient_id, Patient.collection_id == collection_id))
        .outerjoin(Submission, Submission.id == Series.submission_id)
        .where(_live(version))
        .group_by(Series.id, Study.id, Patient.id, Submission.id)
        .order_by(Series.uid)
    )
    if series_uid is None and study_uid is None and patient_id is None:
        # A whole collection: its span index. Lookups leave this out, so that the planner starts from the
        # series, study or patient row and reads only its series' instances (``ix_instances_series_span``).
        query = query.where(Instance.collection_id == collection_id)
    if series_uid is not None:
        query = query.where(Series.uid == series_uid)
    if study_uid is not None:
        query = query.where(Study.uid == study_uid)
    if patient_id is not None:
        query = query.where(Patient.pseudonym == patient_id)
    with engine.connect() as connection:
        return [SeriesRow(*list(row)) for row in connection.execute(query)]


def series_instances(engine: Engine, series_pk: int, version: int) -> list[InstanceRow]:
    """One series' instances in a version, in object-key order (that is, SOP Instance UID order)."""
    query = (
        select(
            Instance.object_key,
            Instance.sop_uid,
            Instance.sop_class_uid,
            Instance.tier,
            Instance.size,
            Instance.md5,
            Instance.sha256,
        )
        .where(Instance.series_id == series_pk, _live(version))
        .order_by(Instance.object_key)
    )
    with engine.connect() as connection:
        return [InstanceRow(*row.tuple()) for row in connection.execute(query)]


def series_uid_of_instance(engine: Engine, collection_id: str, sop_uid: str, version: int) -> str | None:
    """The series a version lists this SOP Instance UID in (its ``(sop_uid, collection_id)`` index)."""
    query = (
        select(Series.uid)
        .join(Instance, Instance.series_id == Series.id)
        .where(Instance.sop_uid == sop_uid, Instance.collection_id == collection_id, _live(version))
    )
    with engine.connect() as connection:
        return connection.execute(query).scalars().first()


def patient_ids_ignoring_case(engine: Engine, collection_id: str, patient_id: str) -> list[str]:
    """The pseudonyms equal to ``patient_id`` ignoring case (NBIA's matching), in one collection."""
    query = select(Patient.pseudonym).where(
        Patient.collection_id == collection_id, func.upper(Patient.pseudonym) == patient_id.upper()
    )
    with engine.connect() as connection:
        return sorted(connection.execute(query).scalars())
