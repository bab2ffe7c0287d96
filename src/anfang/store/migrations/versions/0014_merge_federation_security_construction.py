"""merge the parallel migrations (federation, query approvals and exports, encryption and login, projects)

Revision ID: 0014
Revises: 0010_federation, 0011_approvals_exports, 0012_encryption_login, 0013_construction_projects
"""
from collections.abc import Sequence

revision: str = "0014"
down_revision: str | Sequence[str] | None = (
    "0010_federation", "0011_approvals_exports", "0012_encryption_login", "0013_construction_projects")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
