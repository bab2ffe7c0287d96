"""Writing batches: upserts built with SQLAlchemy Core (SQLite executemany, PostgreSQL COPY + upsert), the
federation outbox rows of what changed."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import JSON, Connection, Date, MetaData, Table, bindparam, select
from sqlalchemy import Column as SAColumn
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from anfang.core.errors import ValidationError
from anfang.federation.outbox import TRACKED, Outbox
from anfang.registry import vocab
from anfang.registry.importing.kind import _Kind


# ---- writing -----------------------------------------------------------------------------------------------------
class _Writer:
    """Upserts batches, statements built with SQLAlchemy Core; split in two halves so that the first can run in
    the parsing process.

    prepare(): parameter dicts -> the driver's form (pure Python, no database).
    send(): SQLite runs the compiled INSERT ... ON CONFLICT DO UPDATE with executemany over plain tuples
    (SQLAlchemy's per-row parameter processing costs more than the insert itself); PostgreSQL COPYs into a
    temporary staging table, then runs INSERT ... SELECT ... ON CONFLICT DO UPDATE.

    Addresses carry parent_code instead of parent_id; the statement looks the id up by code. On PostgreSQL a
    statement does not see its own rows, so a batch is inserted level by level, parents first.
    """

    def __init__(self, conn: Connection, k: _Kind) -> None:
        self.conn, self.k = conn, k
        self.outbox: Outbox | None = None
        self.outbox_key, self.outbox_index = "", -1
        self.dialect = conn.dialect.name
        table = k.table
        cols = k.write_cols
        parent = table.alias("parent")
        by_code = "parent_code" in cols and "parent_code" not in table.c  # addresses: parent given by code

        def pseudo(c: str) -> bool:
            return by_code and c == "parent_code"

        def parent_id(code: Any) -> Any:
            return select(parent.c.id).where(parent.c.code == code).scalar_subquery()

        def target(c: str) -> str:
            return "parent_id" if pseudo(c) else c

        def col_type(c: str) -> Any:
            return table.c.code.type if pseudo(c) else table.c[c].type

        set_cols = [target(c) for c in k.set_cols]
        self.levels: list[str] = []
        if self.dialect == "postgresql":
            self.stage = f"_anfang_import_{table.name}"
            stage = Table(self.stage, MetaData(), *[SAColumn(c, col_type(c)) for c in cols])
            values = [parent_id(stage.c[c]).label("parent_id") if pseudo(c) else stage.c[c] for c in cols]
            sel = select(*values)
            if by_code:
                self.levels = list(vocab.ADDRESS_LEVELS)
                sel = sel.where(stage.c.level == bindparam("level"))
            stmt = pg_insert(table).from_select([target(c) for c in cols], sel)
            self.stage_types = {c: col_type(c) for c in cols}
            json_cols = {c for c in cols if isinstance(col_type(c), JSON)}
            # COPY takes the values as they are: JSON as text, encrypted columns through their bind processor
            self.plan = [(c, _json_text if c in json_cols else
                          _driver_form(col_type(c), conn.dialect) if getattr(col_type(c), "encrypted", False)
                          else None) for c in cols]
        elif self.dialect == "sqlite":
            stmt = sqlite_insert(table).values({target(c): parent_id(bindparam(c)) if pseudo(c) else bindparam(c)
                                                for c in cols})
        else:  # pragma: no cover - only the two supported backends
            raise ValidationError(f"不支持的数据库：{self.dialect}")
        self.stmt = stmt.on_conflict_do_update(index_elements=[k.conflict or k.key],
                                               set_={c: stmt.excluded[c] for c in set_cols})
        if self.dialect == "sqlite":
            compiled = self.stmt.compile(dialect=conn.dialect)
            order = tuple(compiled.positiontup or ())
            if sorted(order) != sorted(cols):  # pragma: no cover - a column default crept in
                raise AssertionError(f"unexpected parameters {order}")
            self.sql = compiled.string
            self.plan = [(c, _driver_form(col_type(c), conn.dialect)) for c in order]

    def prepare(self, rows: list[dict[str, Any]]) -> list[tuple]:
        get = operator.itemgetter(*[c for c, _ in self.plan])
        convert = [(i, f) for i, (_, f) in enumerate(self.plan) if f is not None]
        if not convert:
            return [get(r) for r in rows]
        out = []
        for r in rows:
            v = list(get(r))
            for i, f in convert:
                v[i] = f(v[i])
            out.append(tuple(v))
        return out

    def with_outbox(self, outbox: Outbox | None) -> None:
        """Write the federation outbox rows of every batch sent (docs/federation.md): the outbox of a node with a
        parent, and a kind whose table travels up; otherwise (a standalone node, regions) nothing is done."""
        if outbox is None or not outbox.parents or self.k.table.name not in TRACKED:
            return
        self.outbox = outbox
        self.outbox_key = self.k.conflict or self.k.key  # unique column of the upsert, in the driver's form as is
        self.outbox_index = [c for c, _ in self.plan].index(self.outbox_key)

    def send(self, payload: list[tuple]) -> None:
        if not payload:
            return
        self._send(payload)
        if self.outbox is not None:  # the records just written, read back in this transaction
            i = self.outbox_index
            self.outbox.write_records(self.conn, self.k.table, self.outbox_key, [r[i] for r in payload])

    def _send(self, payload: list[tuple]) -> None:
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(self.sql, payload)
            return
        names = ", ".join(f'"{c}"' for c in self.k.write_cols)
        types = ", ".join(f'"{c}" {t.compile(dialect=self.conn.dialect)}' for c, t in self.stage_types.items())
        # ON COMMIT DELETE ROWS: each transaction leaves the staging table empty; TRUNCATE between batches
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({types}) ON COMMIT DELETE ROWS")
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {self.stage} ({names}) FROM STDIN") as cp:
            for r in payload:
                cp.write_row(r)
        if self.levels:
            for level in self.levels:
                self.conn.execute(self.stmt, {"level": level})
        else:
            self.conn.execute(self.stmt)
        self.conn.exec_driver_sql(f"TRUNCATE {self.stage}")

    def close(self) -> None:
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.stage}")
            self.conn.commit()


def _json_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _driver_form(typ: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The function turning a Python value into what the DBAPI driver receives (None: as is), i.e. SQLAlchemy's
    bind processor of the type, with a fast path for dates and memoisation for values that repeat (timestamps,
    label lists)."""
    proc = typ.dialect_impl(dialect).bind_processor(dialect)
    if proc is None:
        return None
    if getattr(typ, "encrypted", False):  # a fresh nonce per value: never memoised
        return typ.bulk_encryptor() if hasattr(typ, "bulk_encryptor") else proc
    if isinstance(typ, Date):
        sample = date(1901, 2, 3)
        if proc(sample) == sample.isoformat():
            return _iso_or_none
    cache: dict[Any, Any] = {}

    def memo(v: Any) -> Any:
        if v is None:
            return None
        key = tuple(v) if isinstance(v, list) else v
        try:
            return cache[key]
        except KeyError:
            if len(cache) > 10_000:
                cache.clear()
            out = cache[key] = proc(v)
            return out
        except TypeError:  # unhashable
            return proc(v)

    return memo


def _iso_or_none(v: date | None) -> str | None:
    return None if v is None else v.isoformat()
