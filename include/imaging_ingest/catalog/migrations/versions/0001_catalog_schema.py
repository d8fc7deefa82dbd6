"""The catalog schema: collections, versions, submissions, the patient/study/series/instance tree, audit.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Instances are spans (published_version .. retired_version) so that a version's members
are one indexed range query; see ``catalog/models.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.String(48), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("license", sa.String(32), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("files_in", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        *(
            sa.Column(f"{state}_at", sa.DateTime(), nullable=True)
            for state in (
                "discovered", "claimed", "staged", "inventoried", "deidentified",
                "screened", "verified", "registered", "published", "failed",
            )
        ),
        _fk("submissions", "collection_id", "collections"),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
    )
    op.create_index("ix_submissions_collection_id", "submissions", ["collection_id"])
    op.create_table(
        "drop_observations",
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "name", name="pk_drop_observations"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("patients", "collection_id", "collections"),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
        sa.UniqueConstraint("collection_id", "id_hash", name="uq_patients_collection_id_id_hash"),
        sa.UniqueConstraint("collection_id", "pseudonym", name="uq_patients_collection_id_pseudonym"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=True),
        sa.Column("description", sa.String(128), nullable=True),
        _fk("studies", "collection_id", "collections"),
        _fk("studies", "patient_id", "patients"),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("collection_id", "uid", name="uq_studies_collection_id_uid"),
    )
    op.create_index("ix_studies_patient_id", "studies", ["patient_id"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("body_part", sa.String(64), nullable=True),
        sa.Column("manufacturer", sa.String(64), nullable=True),
        sa.Column("description", sa.String(128), nullable=True),
        sa.Column("submission_id", sa.String(64), nullable=False),
        _fk("series", "collection_id", "collections"),
        _fk("series", "study_id", "studies"),
        _fk("series", "submission_id", "submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.UniqueConstraint("uid", "collection_id", name="uq_series_uid_collection_id"),
    )
    op.create_index("ix_series_study_id", "series", ["study_id"])
    op.create_index("ix_series_submission_id", "series", ["submission_id"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("retired_version", sa.Integer(), nullable=True),
        sa.Column("fixity_checked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("instances", "collection_id", "collections"),
        _fk("instances", "series_id", "series"),
        _fk("instances", "submission_id", "submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_index("ix_instances_sop_collection", "instances", ["sop_uid", "collection_id"])
    op.create_index("ix_instances_collection_key", "instances", ["collection_id", "object_key"])
    op.create_index("ix_instances_collection_span", "instances", ["collection_id", "published_version", "retired_version"])
    op.create_index("ix_instances_collection_fixity", "instances", ["collection_id", "fixity_checked_at"])
    op.create_index("ix_instances_series_id", "instances", ["series_id"])
    op.create_index("ix_instances_submission_id", "instances", ["submission_id"])
    op.create_table(
        "collection_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("release_key", sa.String(512), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("doi", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk("collection_versions", "collection_id", "collections"),
        _fk("collection_versions", "submission_id", "submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_collection_versions"),
        sa.UniqueConstraint("collection_id", "number", name="uq_collection_versions_collection_id_number"),
    )
    op.create_table(
        "quarantine_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        _fk("quarantine_items", "collection_id", "collections"),
        _fk("quarantine_items", "submission_id", "submissions"),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine_items"),
        sa.UniqueConstraint("submission_id", "file_id", name="uq_quarantine_items_submission_id_file_id"),
    )
    op.create_index("ix_quarantine_items_collection_id", "quarantine_items", ["collection_id"])
    op.create_index("ix_quarantine_items_submission_id", "quarantine_items", ["submission_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(512), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("collection_id", sa.String(48), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_collection_id", "audit_events", ["collection_id"])
    op.create_index("ix_audit_object", "audit_events", ["object_id"])


def downgrade() -> None:
    for table in (
        "audit_events", "quarantine_items", "collection_versions", "instances", "series", "studies",
        "patients", "drop_observations", "submissions", "collections",
    ):
        op.drop_table(table)
