"""leases: index (project_id, annotator, status) instead of (project_id, annotator)

Revision ID: 5b2e9c4f1a07
Revises: c4a1e7d2b9f3
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b2e9c4f1a07"
down_revision: str | None = "c4a1e7d2b9f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_leases_project_annotator_status", "leases", ["project_id", "annotator", "status"]
    )
    op.drop_index("ix_leases_project_annotator", table_name="leases")


def downgrade() -> None:
    op.create_index("ix_leases_project_annotator", "leases", ["project_id", "annotator"])
    op.drop_index("ix_leases_project_annotator_status", table_name="leases")
