"""merge the parallel migrations (durable consumers and keyed audit; field-ready devices)

Revision ID: 0018
Revises: 0016, 0017
"""
from collections.abc import Sequence

revision: str = "0018"
down_revision: str | Sequence[str] | None = ("0016", "0017")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
