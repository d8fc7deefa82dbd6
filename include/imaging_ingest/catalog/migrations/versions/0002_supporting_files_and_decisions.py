"""Supporting files (de-identified slides and clinical tables), curators' quarantine decisions, approvals runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

See ``catalog/curation.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("approvals_at", sa.DateTime(), nullable=True))
    op.create_table(
        "supporting_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=True),
        sa.Column("object_key", sa.String(512), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("fixity_checked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], name="fk_supporting_files_collection_id_collections"),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], name="fk_supporting_files_submission_id_submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_supporting_files"),
        sa.UniqueConstraint("collection_id", "object_key", name="uq_supporting_files_collection_id_object_key"),
    )
    op.create_index("ix_supporting_files_collection_id", "supporting_files", ["collection_id"])
    op.create_index("ix_supporting_files_submission_id", "supporting_files", ["submission_id"])
    op.create_index("ix_supporting_files_pseudonym", "supporting_files", ["pseudonym"])
    op.create_table(
        "quarantine_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("regions", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["quarantine_items.id"], name="fk_quarantine_decisions_item_id_quarantine_items"),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine_decisions"),
        sa.UniqueConstraint("item_id", name="uq_quarantine_decisions_item_id"),
    )


def downgrade() -> None:
    op.drop_table("quarantine_decisions")
    op.drop_index("ix_supporting_files_pseudonym", table_name="supporting_files")
    op.drop_index("ix_supporting_files_submission_id", table_name="supporting_files")
    op.drop_index("ix_supporting_files_collection_id", table_name="supporting_files")
    op.drop_table("supporting_files")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("approvals_at")
