"""Every catalog query the API makes, read-only, in one place.

The catalog's schema belongs to the pipeline and changes with it; keeping the API's
reads here means a schema change touches one module. Rows come back as plain frozen
dataclasses, detached from any session, so that they can be cached and shared between
request threads.
"""

from __future__ import annotations

from collections.abc import Collection as Many
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, create_engine, event, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from imaging_ingest.catalog.models import (
    Collection,
    CollectionVersion,
    Instance,
    Patient,
    Series,
    Study,
    Submission,
)

__all__ = [
    "Condition",
    "InstanceRow",
    "SeriesRow",
    "VersionRow",
    "connect",
    "instance_row",
    "patient_ids_ignoring_case",
    "published_versions",
    "series_instances",
    "series_page",
    "series_rows",
    "study_page",
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
    study_uids: Many[str] | None = None,
) -> list[SeriesRow]:
    """The series a version lists (optionally one series, one or several studies', or one patient's), by UID.

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
    if series_uid is None and study_uid is None and patient_id is None and study_uids is None:
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
        if study_uids is None:
            return [SeriesRow(*list(row)) for row in connection.execute(query)]
        wanted, rows = sorted(set(study_uids)), list[SeriesRow]()
        for start in range(0, len(wanted), 500):  # bounded IN lists (SQLite's parameter limit)
            chunk = query.where(Study.uid.in_(wanted[start : start + 500]))
            rows.extend(SeriesRow(*list(row)) for row in connection.execute(chunk))
        rows.sort(key=lambda r: r.uid)
        return rows


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


def instance_row(engine: Engine, collection_id: str, version: int, study_uid: str, series_uid: str,
                 sop_uid: str) -> InstanceRow | None:
    """One instance a version lists, named by its study, series and SOP Instance UIDs.

    The series row first (its ``(uid, collection_id)`` unique index), then that series' instances
    by UID: the instance's own collection is left out of the filter, or the planner would walk
    the collection's span index instead.
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
        )
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Series.uid == series_uid, Series.collection_id == collection_id, Instance.sop_uid == sop_uid,
               Study.uid == study_uid, _live(version))
        .order_by(Instance.object_key)
        .limit(1)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return InstanceRow(*row.tuple()) if row is not None else None


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


# -- searches (QIDO-RS): matching and paging in SQL -------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One matching key on a catalog column, as QIDO-RS matches it (PS3.18 10.6.1.2).

    ``field`` names the column (``STUDY_FIELDS`` / ``SERIES_FIELDS``); ``kind`` says how:
    ``uids`` (a list separated by ``,`` or ``\\``, each exact), ``range`` (a date or a range
    ``a-b``, ``a-``, ``-b``) or ``text`` (``\\``-separated values, ``*``/``?`` wildcards,
    ignoring case). An empty pattern or ``*`` matches everything.
    """

    field: str
    kind: str
    pattern: str


def _uid_list(pattern: str) -> list[str]:
    return [p.strip() for p in pattern.replace("\\", ",").split(",") if p.strip()]


def _like(pattern: str) -> str:
    escaped = pattern.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _text(column: Any, pattern: str) -> ColumnElement[bool]:
    values = pattern.split("\\")
    tests = [
        func.upper(column).like(_like(v), escape="\\") if ("*" in v or "?" in v) else func.upper(column) == v.upper()
        for v in values
    ]
    return or_(*tests)


def _range(column: Any, pattern: str) -> ColumnElement[bool]:
    if "-" not in pattern:
        return func.substr(column, 1, len(pattern)) == pattern
    low, _, high = pattern.partition("-")
    tests: list[ColumnElement[bool]] = [column.is_not(None), column != ""]
    if low:
        tests.append(column >= low)
    if high:
        tests.append(func.substr(column, 1, len(high)) <= high)
    return and_(*tests)


def _condition(column: Any, condition: Condition) -> ColumnElement[bool] | None:
    if condition.pattern in ("", "*"):
        return None
    if condition.kind == "uids":
        return column.in_(_uid_list(condition.pattern))
    if condition.kind == "range":
        return _range(column, condition.pattern)
    return _text(column, condition.pattern)


def _live_series(series: Any, version: int) -> ColumnElement[bool]:
    """The series has an instance listed in ``version`` (``ix_instances_series_span``)."""
    return exists(select(literal(1)).select_from(Instance).where(Instance.series_id == series.id, _live(version)))


def _study_conditions(conditions: Sequence[Condition]) -> list[ColumnElement[bool]]:
    columns = {"study_uid": Study.uid, "study_date": Study.study_date, "patient": Patient.pseudonym,
               "study_description": Study.description}
    out = []
    for c in conditions:
        if c.field in columns and (test := _condition(columns[c.field], c)) is not None:
            out.append(test)
    return out


def _modalities_in_study(conditions: Sequence[Condition], version: int) -> list[ColumnElement[bool]]:
    """ModalitiesInStudy: one of the study's series listed in ``version`` has a matching modality."""
    out: list[ColumnElement[bool]] = []
    for c in conditions:
        if c.field != "modalities_in_study":
            continue
        member = aliased(Series)
        test = _condition(member.modality, c)
        if test is not None:
            out.append(exists(select(literal(1)).select_from(member).where(
                member.study_id == Study.id, test, _live_series(member, version))))
    return out


def _series_conditions(conditions: Sequence[Condition]) -> list[ColumnElement[bool]]:
    columns = {"series_uid": Series.uid, "modality": Series.modality, "series_description": Series.description,
               "body_part": Series.body_part, "manufacturer": Series.manufacturer}
    out = []
    for c in conditions:
        if c.field in columns and (test := _condition(columns[c.field], c)) is not None:
            out.append(test)
    return out


#: The fields each search can match in SQL.
STUDY_FIELDS = frozenset({"study_uid", "study_date", "patient", "study_description", "modalities_in_study"})
SERIES_FIELDS = STUDY_FIELDS | {"series_uid", "modality", "series_description", "body_part", "manufacturer"}


def study_page(engine: Engine, versions: Sequence[tuple[str, int]], conditions: Sequence[Condition],
               limit: int, offset: int) -> list[tuple[str, str]]:
    """``(collection, study UID)`` of the matching studies these versions list, a page of them.

    Ordered by collection, then UID (the ``(collection_id, uid)`` unique index), matched and
    paged by the database: nothing is read for the studies before ``offset``.
    """
    if not versions or limit <= 0:
        return []
    member = aliased(Series)
    listed = or_(*(
        and_(Study.collection_id == collection_id,
             exists(select(literal(1)).select_from(member).where(member.study_id == Study.id,
                                                                 _live_series(member, version))),
             *_modalities_in_study(conditions, version))
        for collection_id, version in versions
    ))
    tests = _study_conditions(conditions)
    query = (
        select(Study.collection_id, Study.uid)
        .join(Patient, Patient.id == Study.patient_id)
        .where(listed, *tests)
        .order_by(Study.collection_id, Study.uid)
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(query)]


def series_page(engine: Engine, versions: Sequence[tuple[str, int]], conditions: Sequence[Condition],
                limit: int, offset: int) -> list[tuple[str, str, str]]:
    """``(collection, series UID, study UID)`` of the matching series these versions list, a page of them.

    Ordered by collection, then series UID (the ``(collection_id, uid)`` index), matched on
    the series' and their studies' columns and paged by the database.
    """
    if not versions or limit <= 0:
        return []
    per_version = [
        and_(Series.collection_id == collection_id, _live_series(Series, version),
             *_modalities_in_study(conditions, version))
        for collection_id, version in versions
    ]
    study_tests = _study_conditions(conditions)
    query = (
        select(Series.collection_id, Series.uid, Study.uid)
        .join(Study, Study.id == Series.study_id)
        .join(Patient, Patient.id == Study.patient_id)
        .where(or_(*per_version), *study_tests, *_series_conditions(conditions))
        .order_by(Series.collection_id, Series.uid)
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as connection:
        return [(row[0], row[1], row[2]) for row in connection.execute(query)]
