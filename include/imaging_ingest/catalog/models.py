"""Catalog tables: what the archive holds, where, and what happened to it.

Only de-identified values live here, plus keyed hashes of original patient identifiers
(so that a returning patient gets the same pseudonym) and the submitted file names of
quarantined files (the catalog is restricted, never public).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AuditEvent",
    "Base",
    "Collection",
    "CollectionVersion",
    "DropObservation",
    "Instance",
    "Patient",
    "QuarantineItem",
    "Series",
    "Study",
    "Submission",
    "SubmissionState",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SubmissionState:
    """A submission's life, in order; ``failed`` can follow any state and be resumed from."""

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

    ORDER = (DISCOVERED, CLAIMED, STAGED, INVENTORIED, DEIDENTIFIED, SCREENED, VERIFIED, REGISTERED, PUBLISHED)


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
    __table_args__ = (UniqueConstraint("collection_id", "uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"))
    uid: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), nullable=True, doc="shifted")
    description: Mapped[str | None] = mapped_column(String(128), nullable=True, doc="scrubbed")

    patient: Mapped[Patient] = relationship()


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("collection_id", "uid"),)

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
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("collection_id", "sop_uid"),)

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
    """A PREMIS-style event: what happened to which object, by whom, with what outcome."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_object", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(512))
    collection_id: Mapped[str | None] = mapped_column(String(48), nullable=True, index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
