"""Catalog tables: what the archive holds, where, and what happened to it.

Only de-identified values live here, plus keyed hashes of original patient identifiers
(so that a returning patient gets the same pseudonym) and the submitted file names of
quarantined files (the catalog is restricted, never public).

The schema is owned by the Alembic migrations in ``catalog/migrations``; a test checks
that these models and the migrations agree on SQLite and PostgreSQL.

Versions are spans: an instance row is one object's stay in the collection, from the
version that first listed it (``published_version``) up to, not including, the version
that dropped it (``retired_version``, None while it is still listed). A version's
members are therefore one indexed range query, and an unchanged object costs nothing
when a new version is made.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AuditEvent",
    "Base",
    "Collection",
    "CollectionVersion",
    "DropObservation",
    "EventOutcome",
    "EventType",
    "Instance",
    "Patient",
    "QuarantineItem",
    "Series",
    "Study",
    "Submission",
    "SubmissionState",
    "VersionKind",
    "utcnow",
]

#: Constraint and index names that are the same on every backend, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SubmissionState:
    """A submission's life, in order; ``failed`` can follow any state and be resumed from.

    ``staged`` (originals copied to the raw tier) sits between ``claimed`` and
    ``inventoried``. ``approvals`` is a published submission being run again to publish
    files curators approved out of quarantine (earlier manifests are re-used). Each state
    has a ``<state>_at`` timestamp on the submission row: the last time the submission
    entered it.
    """

    DISCOVERED = "discovered"
    CLAIMED = "claimed"
    STAGED = "staged"
    INVENTORIED = "inventoried"
    DEIDENTIFIED = "deidentified"
    SCREENED = "screened"
    VERIFIED = "verified"
    REGISTERED = "registered"
    PUBLISHED = "published"
    FAILED = "failed"
    APPROVALS = "approvals"

    ORDER = (DISCOVERED, CLAIMED, STAGED, INVENTORIED, DEIDENTIFIED, SCREENED, VERIFIED, REGISTERED, PUBLISHED)
    #: States outside the order: any state may lead to them and they may lead to any state.
    OUT_OF_ORDER = (FAILED, APPROVALS)
    ALL = (*ORDER, *OUT_OF_ORDER)


class EventType(StrEnum):
    """PREMIS event types (https://id.loc.gov/vocabulary/preservation/eventType) the archive records."""

    INGESTION = "ingestion"
    DEIDENTIFICATION = "de-identification"
    VALIDATION = "validation"
    FIXITY_CHECK = "fixity check"
    PUBLICATION = "publication"
    REPLACEMENT = "replacement"
    WITHDRAWAL = "withdrawal"
    QUARANTINE = "quarantine"


class EventOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"


class VersionKind(StrEnum):
    """Why a collection version was made."""

    SUBMISSION = "submission"
    WITHDRAWAL = "withdrawal"


class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    license: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    source_url: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=SubmissionState.DISCOVERED)
    files_in: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    discovered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    staged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    inventoried_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deidentified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    screened_at: Mapped[datetime | None] = mapped_column(nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    registered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    approvals_at: Mapped[datetime | None] = mapped_column(nullable=True)

    def timestamps(self) -> dict[str, datetime | None]:
        """When the submission last entered each state, in the order of the states."""
        return {state: getattr(self, f"{state}_at") for state in SubmissionState.ALL}


class DropObservation(Base):
    """The last listing seen of a submission folder, for the 'unchanged across two polls' rule."""

    __tablename__ = "drop_observations"

    collection_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("collection_id", "id_hash"),
        UniqueConstraint("collection_id", "pseudonym"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    pseudonym: Mapped[str] = mapped_column(String(64))
    id_hash: Mapped[str] = mapped_column(String(64), doc="HMAC-SHA256 of the original PatientID")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        UniqueConstraint("collection_id", "uid"),
        Index("ix_studies_collection_date", "collection_id", "study_date"),  # QIDO StudyDate ranges
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    uid: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), nullable=True, doc="shifted")
    description: Mapped[str | None] = mapped_column(String(128), nullable=True, doc="scrubbed")

    patient: Mapped[Patient] = relationship()


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("uid", "collection_id"),  # UID first: the audit trail finds a series by UID
        Index("ix_series_collection_uid", "collection_id", "uid"),  # QIDO pages a collection's series in UID order
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    uid: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    body_part: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manufacturer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str | None] = mapped_column(String(128), nullable=True, doc="scrubbed")
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)

    study: Mapped[Study] = relationship()


class Instance(Base):
    """One object's stay in a collection: listed from ``published_version`` until ``retired_version``.

    A row with ``published_version`` None is registered but not yet published. A replaced
    instance (same SOP Instance UID, different bytes) is a new row under a new object key;
    the old row keeps its key and objects are never overwritten.
    """

    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_sop_collection", "sop_uid", "collection_id"),  # also serves a lookup by UID alone
        Index("ix_instances_collection_key", "collection_id", "object_key"),
        Index("ix_instances_collection_span", "collection_id", "published_version", "retired_version"),
        Index("ix_instances_collection_fixity", "collection_id", "fixity_checked_at"),
        Index("ix_instances_series_span", "series_id", "published_version", "retired_version"),  # the API's lookups
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    object_key: Mapped[str] = mapped_column(String(512))
    tier: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    published_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retired_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fixity_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[Series] = relationship()


class CollectionVersion(Base):
    __tablename__ = "collection_versions"
    __table_args__ = (UniqueConstraint("collection_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    number: Mapped[int] = mapped_column(Integer)
    release_key: Mapped[str] = mapped_column(String(512))
    objects: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    submission_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default=VersionKind.SUBMISSION.value)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True, doc="why (restricted: may be free text)")
    doi: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantineItem(Base):
    __tablename__ = "quarantine_items"
    __table_args__ = (UniqueConstraint("submission_id", "file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), index=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    file_id: Mapped[int] = mapped_column(Integer)
    source_path: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    object_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class AuditEvent(Base):
    """A PREMIS-style event: what happened (type) to which object, by whom (agent), with what outcome, when.

    ``object_id`` is an object key, a series UID, a submission id or a release key, as
    ``object_type`` says; ``detail`` names tags, counts and keys, never PHI values.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_object", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(512))
    object_type: Mapped[str] = mapped_column(String(16), default="object")
    collection_id: Mapped[str | None] = mapped_column(String(48), nullable=True, index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
