"""one active training per project: a partial unique index on jobs (queued/running train)

Revision ID: 3b7e41d9c2a5
Revises: 5d3c1a7b9e20
Create Date: 2026-12-01 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b7e41d9c2a5"
down_revision: str | None = "5d3c1a7b9e20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_TRAINING = "kind = 'train' AND status IN ('queued', 'running')"


def upgrade() -> None:
    # a database that already holds two active trainings of one project keeps the newest
    op.execute(
        "UPDATE jobs SET status = 'failed', error = 'superseded: one training per project' "
        f"WHERE {ACTIVE_TRAINING} AND id NOT IN (SELECT MAX(id) FROM jobs "
        f"WHERE {ACTIVE_TRAINING} GROUP BY project_id)"
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "uq_jobs_one_active_training", ["project_id"], unique=True,
            sqlite_where=sa.text(ACTIVE_TRAINING), postgresql_where=sa.text(ACTIVE_TRAINING),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_one_active_training")
