"""security: encryption at rest (ID numbers, phones, face embeddings; blind indexes), login protection
(lockout, TOTP), session idle expiry, access alerts

Existing plaintext rows are encrypted in place with the current data key (anfang.security.crypto: key file or
ANFANG_DATA_KEYS), in batches; the ID number's unique constraint moves to its keyed hash.

Revision ID: 0012_encryption_login
Revises: 0009
Create Date: 2026-11-29 05:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anfang.store.base

revision: str = "0012_encryption_login"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def _persons() -> sa.TableClause:
    return sa.table("persons", sa.column("id"), sa.column("id_number"), sa.column("id_number_hash"),
                    sa.column("phone"), sa.column("phone_hash"))


def _convert(encrypt: bool) -> None:
    """Encrypt (upgrade) or decrypt (downgrade) the protected columns of every row, BATCH rows at a time."""
    from anfang.security import crypto

    conn = op.get_bind()
    ring = None
    # Frozen to the columns this revision encrypts: later revisions (0015: door plates) add columns to
    # crypto.ENCRYPTED_COLUMNS after widening them, and convert their own rows.
    own = [c for c in crypto.ENCRYPTED_COLUMNS if c[0] in ("persons", "houses", "face_entries")]
    for table, pk, column, context, kind in own:
        extra = ("id_number_hash",) if (table, column) == ("persons", "id_number") else \
            ("phone_hash",) if (table, column) == ("persons", "phone") else ()
        t = sa.table(table, sa.column(pk), sa.column(column), *[sa.column(c) for c in extra])
        after = None
        while True:
            q = sa.select(t.c[pk], t.c[column]).where(t.c[column].is_not(None)).order_by(t.c[pk]).limit(BATCH)
            if after is not None:
                q = q.where(t.c[pk] > after)
            rows = conn.execute(q).all()
            if not rows:
                break
            after = rows[-1][0]
            ring = ring or crypto.keyring()
            updates = []
            for key, value in rows:
                stored_kid = ring.key_id_of(value)
                if encrypt:
                    plain = value if stored_kid == "" else (ring.decrypt_text(value, context) if kind == "text"
                                                             else ring.decrypt_bytes(value, context))
                    new = ring.encrypt_text(plain, context) if kind == "text" else ring.encrypt_bytes(plain, context)
                else:
                    plain = new = ring.decrypt_text(value, context) if kind == "text" \
                        else ring.decrypt_bytes(value, context)
                row = {"_pk": key, "_v": new}
                if extra:
                    row["_h"] = (ring.blind(crypto.normalise_id_number(plain), "id_number") if column == "id_number"
                                 else ring.blind(crypto.normalise_phone(plain), "phone"))
                updates.append(row)
            values = {column: sa.bindparam("_v")}
            if extra:
                values[extra[0]] = sa.bindparam("_h")
            conn.execute(sa.update(t).where(t.c[pk] == sa.bindparam("_pk")).values(values), updates)


def _recreate() -> str:
    """SQLite cannot drop a table's inline UNIQUE constraint: copy the table (foreign keys are off during
    migrations). PostgreSQL alters in place (a copy would break the foreign keys pointing at persons)."""
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_number_hash", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("phone_hash", sa.String(length=32), nullable=True))
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True))

    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:  # ciphertext is longer than the plaintext; SQLite does not enforce VARCHAR lengths
        op.drop_index("ix_persons_phone", table_name="persons")
        op.drop_constraint("uq_persons_id_number", "persons", type_="unique")
        op.alter_column("persons", "id_number", existing_type=sa.String(length=18), type_=sa.Text())
        op.alter_column("persons", "phone", existing_type=sa.String(length=20), type_=sa.Text())
        op.alter_column("houses", "owner_phone", existing_type=sa.String(length=20), type_=sa.Text())

    _convert(encrypt=True)

    # The ID number's uniqueness moves to its keyed hash (ciphertexts are random); the phone index likewise.
    with op.batch_alter_table("persons", schema=None, recreate=_recreate()) as batch_op:
        if sqlite:
            batch_op.drop_index("ix_persons_phone")
            batch_op.drop_constraint("uq_persons_id_number", type_="unique")
            batch_op.alter_column("id_number", existing_type=sa.String(length=18), type_=sa.Text(), nullable=False)
            batch_op.alter_column("phone", existing_type=sa.String(length=20), type_=sa.Text(), nullable=True)
        batch_op.alter_column("id_number_hash", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_persons_id_number_hash"), ["id_number_hash"])
        batch_op.create_index(batch_op.f("ix_persons_phone_hash"), ["phone_hash"], unique=False)

    op.create_table(
        "user_security",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("locked_until", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("updated_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_security_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_security")),
    )
    op.create_table(
        "access_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_at", anfang.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=True),
        sa.Column("county_code", sa.String(length=6), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", anfang.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_alerts")),
    )
    with op.batch_alter_table("access_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_alerts_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_alerts_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_alerts_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_alerts_county_code"), ["county_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_alerts_county_code"))
        batch_op.drop_index(batch_op.f("ix_access_alerts_user_id"))
        batch_op.drop_index(batch_op.f("ix_access_alerts_kind"))
        batch_op.drop_index(batch_op.f("ix_access_alerts_at"))
    op.drop_table("access_alerts")
    op.drop_table("user_security")
    _convert(encrypt=False)
    with op.batch_alter_table("persons", schema=None, recreate=_recreate()) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_phone_hash"))
        batch_op.drop_constraint(batch_op.f("uq_persons_id_number_hash"), type_="unique")
        batch_op.alter_column("id_number", existing_type=sa.Text(), type_=sa.String(length=18), nullable=False)
        batch_op.alter_column("phone", existing_type=sa.Text(), type_=sa.String(length=20), nullable=True)
        batch_op.drop_column("phone_hash")
        batch_op.drop_column("id_number_hash")
        batch_op.create_unique_constraint(batch_op.f("uq_persons_id_number"), ["id_number"])
        batch_op.create_index(batch_op.f("ix_persons_phone"), ["phone"], unique=False)
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("houses", schema=None) as batch_op:
            batch_op.alter_column("owner_phone", existing_type=sa.Text(), type_=sa.String(length=20))
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
