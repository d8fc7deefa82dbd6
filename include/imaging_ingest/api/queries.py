"""Every catalog query the API makes, read-only, in one place.

The catalog's schema belongs to the pipeline and changes with it; keeping the API's
reads here means a schema change touches one module. Rows come back as plain frozen
dataclasses, detached from any session, so that they can be cached and shared between
request threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session

from ..catalog.models import Collection, CollectionVersion, Instance, Patient, Series, Study, Submission

__all__ = ["InstanceRow", "VersionRow", "collection_instances", "connect", "published_versions"]


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


@dataclass(frozen=True)
class InstanceRow:
    """One catalogued instance with its series, study and patient (de-identified values only)."""

    object_key: str
    sop_uid: str
    sop_class_uid: str
    tier: str
    size: int
    md5: str
    sha256: str
    published_version: int | None
    series_uid: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    series_description: str | None
    study_uid: str
    study_date: str | None
    study_description: str | None
    patient_id: str
    submitted_at: datetime | None


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
        )
        .join(Collection, Collection.id == CollectionVersion.collection_id)
        .order_by(CollectionVersion.collection_id, CollectionVersion.number)
    )
    with Session(engine) as session:
        return [VersionRow(*row.tuple()) for row in session.execute(query)]


def collection_instances(engine: Engine, collection_id: str) -> Iterator[InstanceRow]:
    """All catalogued instances of a collection with their series, study and patient.

    Which of them a version contains is the release's business (``releases.py``), not
    the catalog's: an instance is served only when its object key is in the release.
    """
    query = (
        select(
            Instance.object_key,
            Instance.sop_uid,
            Instance.sop_class_uid,
            Instance.tier,
            Instance.size,
            Instance.md5,
            Instance.sha256,
            Instance.published_version,
            Series.uid,
            Series.modality,
            Series.body_part,
            Series.manufacturer,
            Series.description,
            Study.uid,
            Study.study_date,
            Study.description,
            Patient.pseudonym,
            Submission.created_at,
        )
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .join(Patient, Patient.id == Study.patient_id)
        .outerjoin(Submission, Submission.id == Series.submission_id)
        .where(Instance.collection_id == collection_id)
        .order_by(Instance.object_key)
        .execution_options(yield_per=5000)
    )
    with Session(engine) as session:
        for row in session.execute(query):
            yield InstanceRow(*list(row))
