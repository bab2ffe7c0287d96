"""merge the rooms' parallel migrations (GB/T 28181, GA/T 1400, door plates, faces, warnings)

Revision ID: 0008
Revises: 0003, 0004, 0005, 0006, 0007
"""
from collections.abc import Sequence

revision: str = "0008"
down_revision: str | Sequence[str] | None = ("0003", "0004", "0005", "0006", "0007")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
