"""pseudo label reviews: pseudo-labels routed to annotators for confirmation

Revision ID: e82fc6752ca6
Revises: 0ef174dc74c9
Create Date: 2026-12-01 18:56:50.366547
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e82fc6752ca6"
down_revision: str | None = "0ef174dc74c9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pseudo_label_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("pseudo_annotation_id", sa.Integer(), nullable=True),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("leased_by", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict_annotator", sa.String(length=200), nullable=True),
        sa.Column("verdict_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "corrected_labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("human_annotation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_pseudo_label_reviews_checkpoint_id_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["human_annotation_id"],
            ["annotations.id"],
            name=op.f("fk_pseudo_label_reviews_human_annotation_id_annotations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_pseudo_label_reviews_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_pseudo_label_reviews_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pseudo_annotation_id"],
            ["annotations.id"],
            name=op.f("fk_pseudo_label_reviews_pseudo_annotation_id_annotations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pseudo_label_reviews")),
        sa.UniqueConstraint(
            "checkpoint_id", "item_id", name=op.f("uq_pseudo_label_reviews_checkpoint_id_item_id")
        ),
    )
    with op.batch_alter_table("pseudo_label_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pseudo_label_reviews_checkpoint_id"), ["checkpoint_id"], unique=False
        )
        batch_op.create_index(
            "ix_pseudo_label_reviews_project_status", ["project_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("pseudo_label_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_pseudo_label_reviews_project_status")
        batch_op.drop_index(batch_op.f("ix_pseudo_label_reviews_checkpoint_id"))

    op.drop_table("pseudo_label_reviews")
