"""Data key operations behind ``anfang keys``: status, rotation with online re-encryption, retiring old keys.

Rotation without downtime: ``add_primary_key`` writes a new primary key into the key file next to the old ones;
running servers re-read the file within crypto.RELOAD_SECONDS (and at once when they meet an unknown key id), so
every process can decrypt both while ``reencrypt`` rewrites the rows in small batches, each its own short
transaction (a row changed meanwhile is skipped and picked up by the next pass). Old keys are dropped only when no
row uses them any more (``retire_old_keys``). With keys in ANFANG_DATA_KEYS instead of a file: put the new key
set (new primary plus the old keys) in the environment of every process, restart them one by one, then run
``anfang keys rotate --reencrypt-only``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

from anfang.core.errors import ValidationError
from anfang.security import crypto
from anfang.store.engine import Store

log = structlog.get_logger(__name__)


def _table(table: str, pk: str, column: str) -> tuple[sa.TableClause, tuple[str, ...]]:
    extra = ("id_number_hash",) if (table, column) == ("persons", "id_number") else \
        ("phone_hash",) if (table, column) == ("persons", "phone") else ()
    # untyped columns: the raw stored value, no decryption on the way
    return sa.table(table, sa.column(pk), sa.column(column), *[sa.column(c) for c in extra]), extra


def status(store: Store, batch: int = 20_000) -> Counter:
    """(table.column, key id) -> rows; key id "" is plaintext not yet encrypted."""
    counts: Counter = Counter()
    ring = crypto.keyring()
    with store.engine.connect() as conn:
        for table, pk, column, _context, _kind in crypto.ENCRYPTED_COLUMNS:
            t, _ = _table(table, pk, column)
            after = None
            while True:
                q = sa.select(t.c[pk], t.c[column]).where(t.c[column].is_not(None)).order_by(t.c[pk]).limit(batch)
                if after is not None:
                    q = q.where(t.c[pk] > after)
                rows = conn.execute(q).all()
                if not rows:
                    break
                after = rows[-1][0]
                for _, value in rows:
                    counts[(f"{table}.{column}", ring.key_id_of(value))] += 1
    return counts


def _key_file(settings: Any) -> Path:
    if getattr(settings, "data_keys", None):
        raise ValidationError("数据密钥来自环境变量 ANFANG_DATA_KEYS：请在环境中加入新主密钥并逐个重启进程，再运行 "
                              "`anfang keys rotate --reencrypt-only` / keys come from ANFANG_DATA_KEYS: add the new "
                              "primary there, restart, then run `anfang keys rotate --reencrypt-only`")
    return Path(settings.data_key_file or crypto.default_key_file(settings.data_dir))


def add_primary_key(settings: Any) -> str:
    """Write a new primary key into the key file (old keys stay); returns its id."""
    path = _key_file(settings)
    ring = crypto.keyring()
    ring.reload()
    material = ring.material.with_new_primary()
    crypto.write_key_file(path, material)
    ring.reload(force=True)
    log.info("data_key_added", primary=material.primary, path=str(path))
    return material.primary


def add_audit_key(settings: Any) -> str:
    """Write a new audit-chain key into the key file and make it the one new rows are signed with (the old ones
    stay: rows name their key and verify under it); returns its id."""
    path = _key_file(settings)
    ring = crypto.keyring()
    ring.reload()
    material = ring.material.with_new_audit_key()
    crypto.write_key_file(path, material)
    ring.reload(force=True)
    log.info("audit_key_added", primary=material.audit_primary, path=str(path))
    return material.audit_primary or ""


def _pass(store: Store, batch: int, progress: Callable[[int], None] | None) -> int:
    ring = crypto.keyring()
    changed = 0
    for table, pk, column, context, kind in crypto.ENCRYPTED_COLUMNS:
        t, extra = _table(table, pk, column)
        after = None
        while True:
            with store.engine.begin() as conn:  # one short transaction per batch: the server keeps serving
                q = sa.select(t.c[pk], t.c[column]).where(t.c[column].is_not(None)).order_by(t.c[pk]).limit(batch)
                if after is not None:
                    q = q.where(t.c[pk] > after)
                rows = conn.execute(q).all()
                if not rows:
                    break
                after = rows[-1][0]
                updates = []
                for key, value in rows:
                    if ring.key_id_of(value) == ring.primary:
                        continue
                    if kind == "text":
                        plain = ring.decrypt_text(value, context)
                        row = {"_pk": key, "_old": value, "_v": ring.encrypt_text(plain, context)}
                    else:
                        plain_b = ring.decrypt_bytes(value, context)
                        row = {"_pk": key, "_old": value, "_v": ring.encrypt_bytes(plain_b, context)}
                        plain = ""
                    if extra:
                        row["_h"] = ring.blind(crypto.normalise_id_number(plain), "id_number") \
                            if column == "id_number" else ring.blind(crypto.normalise_phone(plain), "phone")
                    updates.append(row)
                if updates:
                    values: dict[str, Any] = {column: sa.bindparam("_v")}
                    if extra:
                        values[extra[0]] = sa.bindparam("_h")
                    # only where the value is still the one read: a row the server rewrote meanwhile is left alone
                    conn.execute(sa.update(t).where(t.c[pk] == sa.bindparam("_pk"), t.c[column] == sa.bindparam("_old"))
                                 .values(values), updates)
                    changed += len(updates)
            if progress is not None:
                progress(len(rows))
    return changed


def reencrypt(store: Store, *, batch: int = 1000, progress: Callable[[int], None] | None = None,
              settle: float | None = None) -> int:
    """Re-encrypt every value not under the primary key (and any leftover plaintext); returns the values changed.
    A second pass after the servers' reload interval catches rows they wrote with the old key meanwhile."""
    total = _pass(store, batch, progress)
    wait = crypto.RELOAD_SECONDS + 1 if settle is None else settle
    if total and wait > 0:
        time.sleep(wait)
        total += _pass(store, batch, progress)
    return total


def retire_old_keys(store: Store, settings: Any) -> list[str]:
    """Remove from the key file every non-primary key that no row uses any more; returns their ids."""
    path = _key_file(settings)
    ring = crypto.keyring()
    used = {kid for (_col, kid), n in status(store).items() if n and kid}
    old = {k for k in ring.material.keys if k != ring.primary and k not in used}
    if old:
        crypto.write_key_file(path, ring.material.without(old))
        ring.reload(force=True)
    return sorted(old)
