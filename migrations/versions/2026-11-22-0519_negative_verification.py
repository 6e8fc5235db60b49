"""Negative verification: anchor label, verify status, lease and verdict on mined triplets.

Revision ID: fabf4796e866
Revises: f83906685bed
Create Date: 2026-11-22 05:19:43.896758
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fabf4796e866"
down_revision: str | None = "f83906685bed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("negative_triplets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anchor_label", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("verify_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("leased_by", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("verdict_annotator", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("verdict_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("annotation_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_negative_triplets_project_verify", ["project_id", "verify_status"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_negative_triplets_annotation_id_annotations"),
            "annotations",
            ["annotation_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("negative_triplets", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_negative_triplets_annotation_id_annotations"), type_="foreignkey"
        )
        batch_op.drop_index("ix_negative_triplets_project_verify")
        batch_op.drop_column("annotation_id")
        batch_op.drop_column("verdict_at")
        batch_op.drop_column("verdict_annotator")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("leased_by")
        batch_op.drop_column("verify_status")
        batch_op.drop_column("anchor_label")
