"""door plates: encryption at rest of the ID numbers and phones residents and reporters type in

``plate_declarations.id_number`` / ``.phone`` and ``plate_tipoffs.contact`` become AES-256-GCM ciphertext (the
current data key, anfang.security.crypto), in batches; ``plate_declarations.id_number_hash`` (keyed hash, indexed)
takes over the lookups. Downgrade decrypts them back to plaintext.

Revision ID: 0015_doorplates_encryption
Revises: 0014
Create Date: 2026-11-29 06:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_doorplates_encryption"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

# (table, column, associated data, plaintext type); the declaration's ID number also gets its keyed hash
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("plate_declarations", "id_number", "plate_declarations.id_number", 18),
    ("plate_declarations", "phone", "plate_declarations.phone", 20),
    ("plate_tipoffs", "contact", "plate_tipoffs.contact", 20),
)


def _convert(encrypt: bool) -> None:
    """Encrypt (upgrade) or decrypt (downgrade) every value of COLUMNS, BATCH rows at a time, keyset-paginated."""
    from anfang.security import crypto

    conn = op.get_bind()
    ring = None
    for table, column, context, _length in COLUMNS:
        hashed = (table, column) == ("plate_declarations", "id_number")
        t = sa.table(table, sa.column("id"), sa.column(column), *([sa.column("id_number_hash")] if hashed else []))
        after = None
        while True:
            q = sa.select(t.c.id, t.c[column]).where(t.c[column].is_not(None)).order_by(t.c.id).limit(BATCH)
            if after is not None:
                q = q.where(t.c.id > after)
            rows = conn.execute(q).all()
            if not rows:
                break
            after = rows[-1][0]
            ring = ring or crypto.keyring()
            updates = []
            for key, value in rows:
                plain = ring.decrypt_text(value, context)  # plaintext passes through as it is
                new = ring.encrypt_text(plain, context) if encrypt else plain
                if encrypt and ring.key_id_of(value):
                    new = value  # already ciphertext: keep it (only its hash may be missing)
                row = {"_pk": key, "_v": new}
                if hashed:
                    row["_h"] = ring.blind(crypto.normalise_id_number(plain), "id_number") if encrypt else None
                if new != value or hashed:
                    updates.append(row)
            if updates:
                values = {column: sa.bindparam("_v")}
                if hashed:
                    values["id_number_hash"] = sa.bindparam("_h")
                conn.execute(sa.update(t).where(t.c.id == sa.bindparam("_pk")).values(values), updates)


def upgrade() -> None:
    op.add_column("plate_declarations", sa.Column("id_number_hash", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_plate_declarations_id_number_hash"), "plate_declarations", ["id_number_hash"],
                    unique=False)
    if op.get_bind().dialect.name != "sqlite":  # ciphertext outgrows VARCHAR(18/20); SQLite does not enforce it
        for table, column, _context, length in COLUMNS:
            op.alter_column(table, column, existing_type=sa.String(length=length), type_=sa.Text())
    _convert(encrypt=True)


def downgrade() -> None:
    _convert(encrypt=False)
    if op.get_bind().dialect.name != "sqlite":
        for table, column, _context, length in COLUMNS:
            op.alter_column(table, column, existing_type=sa.Text(), type_=sa.String(length=length))
    op.drop_index(op.f("ix_plate_declarations_id_number_hash"), table_name="plate_declarations")
    with op.batch_alter_table("plate_declarations", schema=None) as batch_op:
        batch_op.drop_column("id_number_hash")
