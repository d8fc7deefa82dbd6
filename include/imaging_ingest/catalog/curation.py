"""Catalog tables for supporting files and curators' quarantine decisions (additive to ``models.py``).

``supporting_files``: published files that are not DICOM instances (de-identified slides
and clinical tables), with the pseudonym they belong to when they belong to one patient.
``quarantine_decisions``: what a curator decided about a quarantined item beyond its
state (regions to blank, a note) and when the approved file was published.

Both are created by the Alembic revision 0002.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imaging_ingest.catalog.models import Base, utcnow

__all__ = ["QuarantineDecision", "SupportingFile"]


class SupportingFile(Base):
    __tablename__ = "supporting_files"
    __table_args__ = (UniqueConstraint("collection_id", "object_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), index=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="slide or clinical")
    pseudonym: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    object_key: Mapped[str] = mapped_column(String(512))
    tier: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    published_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fixity_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantineDecision(Base):
    __tablename__ = "quarantine_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("quarantine_items.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    regions: Mapped[str | None] = mapped_column(Text, nullable=True, doc="JSON list of [x, y, width, height]")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
