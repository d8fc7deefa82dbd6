"""Catalog tables of the curators' review of free-text values (additive to ``models.py``).

``freetext_values``: each distinct free-text value (after cleaning) a collection's
submissions kept, keyed by a keyed hash of its normalised form, with the curator's
decision (``pending``, ``safe``, ``unsafe``). The text itself is here so that curators
see what they decide on: the catalog is restricted, never public.
``freetext_occurrences``: how often each value occurred in each attribute of a
submission, whether the detector flagged it and what the run did with it: the
submission's review report.

Both are created by the Alembic revision 0004.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from imaging_ingest.catalog.models import Base, utcnow

__all__ = ["FreeTextOccurrence", "FreeTextValue"]


class FreeTextValue(Base):
    __tablename__ = "freetext_values"
    __table_args__ = (UniqueConstraint("collection_id", "value_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), index=True)
    value_hash: Mapped[str] = mapped_column(String(64), doc="HMAC-SHA256 (hex) of the normalised value")
    text: Mapped[str] = mapped_column(Text, doc="the value as first seen, after cleaning (restricted)")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, doc="the detector flagged it when last seen")
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True, doc="pending, safe or unsafe")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    first_submission_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FreeTextOccurrence(Base):
    __tablename__ = "freetext_occurrences"
    __table_args__ = (UniqueConstraint("submission_id", "value_id", "attribute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    value_id: Mapped[int] = mapped_column(ForeignKey("freetext_values.id"), index=True)
    attribute: Mapped[str] = mapped_column(String(80), doc="the attribute's keyword, or (gggg,eeee)")
    count: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str] = mapped_column(String(16), doc="kept, removed or held (the file quarantined)")
