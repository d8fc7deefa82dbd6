"""Indexes the DICOMweb searches page from: a collection's series by UID, its studies by date.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

QIDO-RS searches that match only catalog columns are matched, ordered and paged by the
database (``api/queries.py``: ``study_page`` / ``series_page``), in the order (collection,
UID). A collection's studies have that order in the ``(collection_id, uid)`` unique index;
series had only ``(uid, collection_id)`` (UID first, for the audit trail), so a page of one
collection's series scanned every collection's. ``(collection_id, study_date)`` answers a
StudyDate range without reading the collection's other studies.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_series_collection_uid", "series", ["collection_id", "uid"])
    op.create_index("ix_studies_collection_date", "studies", ["collection_id", "study_date"])


def downgrade() -> None:
    op.drop_index("ix_studies_collection_date", table_name="studies")
    op.drop_index("ix_series_collection_uid", table_name="series")
