"""queue rankings: the top acquisition score of every queue ranking (stopping signal)

Revision ID: 91db634128f9
Revises: fabf4796e866
Create Date: 2026-11-22 05:21:27.918877
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "91db634128f9"
down_revision: str | None = "fabf4796e866"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_rankings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("top_score", sa.Float(), nullable=True),
        sa.Column("mean_score", sa.Float(), nullable=True),
        sa.Column("n_unlabeled", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_queue_rankings_checkpoint_id_checkpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_queue_rankings_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_rankings")),
    )
    with op.batch_alter_table("queue_rankings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_rankings_project_created", ["project_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("queue_rankings", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_rankings_project_created")
    op.drop_table("queue_rankings")
