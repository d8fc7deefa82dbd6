"""Indexes the data-access API answers from: a series' instances in a version, a study's series.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

The API (NBIA v4 and DICOMweb) asks the catalog per request instead of holding an index
in memory. Its lookups by series, study or patient start from that row and need the
instances of one series within a version's span: ``(series_id, published_version,
retired_version)`` gives the planner that path (with only ``series_id`` indexed it
preferred the collection's span index and read every instance of the collection).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_series_span", "instances", ["series_id", "published_version", "retired_version"])


def downgrade() -> None:
    op.drop_index("ix_instances_series_span", table_name="instances")
