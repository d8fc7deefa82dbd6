"""Curators' review of free-text values: distinct values with decisions, occurrences per submission.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

See ``catalog/textreview.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "freetext_values",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("value_hash", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("first_submission_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], name="fk_freetext_values_collection_id_collections"),
        sa.PrimaryKeyConstraint("id", name="pk_freetext_values"),
        sa.UniqueConstraint("collection_id", "value_hash", name="uq_freetext_values_collection_id_value_hash"),
    )
    op.create_index("ix_freetext_values_collection_id", "freetext_values", ["collection_id"])
    op.create_index("ix_freetext_values_state", "freetext_values", ["state"])
    op.create_table(
        "freetext_occurrences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("value_id", sa.Integer(), nullable=False),
        sa.Column("attribute", sa.String(80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_freetext_occurrences_submission_id_submissions"),
        sa.ForeignKeyConstraint(["value_id"], ["freetext_values.id"], name="fk_freetext_occurrences_value_id_freetext_values"),
        sa.PrimaryKeyConstraint("id", name="pk_freetext_occurrences"),
        sa.UniqueConstraint(
            "submission_id", "value_id", "attribute", name="uq_freetext_occurrences_submission_id_value_id_attribute"
        ),
    )
    op.create_index("ix_freetext_occurrences_submission_id", "freetext_occurrences", ["submission_id"])
    op.create_index("ix_freetext_occurrences_value_id", "freetext_occurrences", ["value_id"])


def downgrade() -> None:
    op.drop_index("ix_freetext_occurrences_value_id", table_name="freetext_occurrences")
    op.drop_index("ix_freetext_occurrences_submission_id", table_name="freetext_occurrences")
    op.drop_table("freetext_occurrences")
    op.drop_index("ix_freetext_values_state", table_name="freetext_values")
    op.drop_index("ix_freetext_values_collection_id", table_name="freetext_values")
    op.drop_table("freetext_values")
