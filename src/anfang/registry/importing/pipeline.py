"""The one import pipeline every kind goes through: map the header, parse rows (in parsing processes for
large files), drop in-file duplicates, resolve batches against the database, write, report."""

from __future__ import annotations

import contextlib
import gc
import json
import operator
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from anfang.core.errors import Forbidden, ValidationError
from anfang.registry.columns import (
    COLUMNS,
    KINDS,
    Column,
    header_index,
    normalize_header,
)
from anfang.registry.importing.addresses import _Addresses
from anfang.registry.importing.houses import _Houses
from anfang.registry.importing.kind import _Kind, _stored_keys
from anfang.registry.importing.persons import _Persons
from anfang.registry.importing.regions import _Regions
from anfang.registry.importing.report import ImportReport, RowError, RowFault, _Masked
from anfang.registry.importing.source import _Source, read_rows
from anfang.registry.importing.units import _Units
from anfang.registry.importing.vehicles import _Vehicles
from anfang.registry.importing.writer import _Writer
from anfang.security import audit, crypto
from anfang.security.roles import BULK, Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

Progress = Callable[[int, int], None]


_KIND_CLASSES: dict[str, type[_Kind]] = {"regions": _Regions, "addresses": _Addresses, "persons": _Persons,
                                         "houses": _Houses, "units": _Units, "vehicles": _Vehicles}


# ---- the import --------------------------------------------------------------------------------------------------
def _map_header(kind: str, header: list[str]) -> tuple[dict[str, int], list[str]]:
    index = header_index(kind)
    present: dict[str, int] = {}
    ignored: list[str] = []
    for i, h in enumerate(header):
        norm = normalize_header(h)
        if not norm:
            continue
        col = index.get(norm)
        if col is None:
            if norm not in ("行号", "错误原因", "row", "reason", "序号", "no"):
                ignored.append(h)
            continue
        if col.field in present:
            raise ValidationError(f"列重复：{h}（与第{present[col.field] + 1}列同为{col.zh}） / duplicate column")
        present[col.field] = i
    missing: list[Column] = [c for c in COLUMNS[kind] if (c.required or c.header_required) and c.field not in present]
    if missing:
        names = "、".join(f"{c.zh}（{c.field}）" for c in missing)
        raise ValidationError(f"缺少必需的列：{names} / missing required column(s)",
                              detail={"missing": [c.field for c in missing]})
    return present, ignored


# Kinds whose rows are read and checked in a second process while this one resolves and writes them (regions are
# few and stay in process).
_PARALLEL_KINDS = frozenset({"addresses", "persons", "houses", "units", "vehicles"})
PARALLEL_MIN_ROWS = 50_000  # below this, starting processes costs more than it saves
PARSERS = 2  # parsing processes (each reads the whole file and parses every other chunk)
SQLITE_IMPORT_CACHE_KIB = 1_048_576  # page cache of the importing connection (grown only as pages are used)
SQLITE_IMPORT_CHECKPOINT_PAGES = 65_536  # WAL checkpoint after ~256 MB instead of 4 MB while importing
COMMIT_ROWS = 100_000  # rows written per transaction (SQLite writes each dirty page to the WAL once per commit)


@dataclass
class _Batch:
    """What the writer sends: rows in the driver's form, their counts and the bad rows."""

    payload: list[tuple]
    count: int  # non-blank rows of the chunk
    inserted: int
    updated: int
    unchanged: int
    errors: list[RowError]


def import_file(store: Store, kind: str, path: Path, principal: Principal,
                progress: Progress | None = None, batch_size: int = 5000, *,
                parallel: bool | None = None) -> ImportReport:
    """Import one CSV / XLSX file of kind ("regions", "addresses", "houses", "persons", "units", "vehicles").

    Raises Forbidden for roles outside BULK, ValidationError for a file that cannot be imported at all (unknown
    kind, unreadable file, missing required column); every problem with a single row is in report.errors.
    progress(rows_done, rows_expected) is called after each batch (rows_expected is estimated from the file
    until the end). batch_size: rows per executemany / COPY and per database pre-select. parallel: read and
    check rows in PARSERS separate processes (None: when the file has PARALLEL_MIN_ROWS rows or more; never for
    regions or an in-memory database).
    """
    if kind not in _KIND_CLASSES:
        raise ValidationError(f"未知的数据类别：{kind}（可选：{'、'.join(KINDS)}）")
    if principal.role not in BULK:
        raise Forbidden(f"当前角色无权批量导入 / role {principal.role.value} may not bulk import")
    if principal.role is Role.county_admin and not principal.county_code:
        raise Forbidden("县级管理员未指定所辖县（市、区） / county admin without a county")
    path = Path(path)
    started = time.perf_counter()
    src = read_rows(path)
    report = ImportReport(kind=kind, total=0, inserted=0, updated=0, unchanged=0, errors=[], seconds=0.0,
                          file=path.name, headers=src.header)
    aborted: str | None = None
    try:
        present, report.ignored_columns = _map_header(kind, src.header)
        width = len(src.header)
        if parallel is None:
            parallel = src.estimated_rows >= PARALLEL_MIN_ROWS
        memory_db = store.engine.url.get_backend_name() == "sqlite" and store.engine.url.database in (
            None, "", ":memory:")
        parallel = parallel and kind in _PARALLEL_KINDS and not memory_db
        now = utcnow()
        with store.engine.connect() as conn:
            restore = _tune_connection(conn)
            k = _KIND_CLASSES[kind](conn, principal, present, now, load=not parallel)
            writer = _Writer(conn, k)
            writer.with_outbox(getattr(store, "outbox", None))  # set by the federation when the node has a parent
            try:
                if parallel:
                    src.close()
                    parsed = _from_children(store.url, kind, path, principal, present, now, width, batch_size,
                                            PARSERS)
                else:
                    parsed = _parse_rows(k, writer, src, width, batch_size, probe=conn)
                batches = _resolve_batches(k, writer, src.header, parsed)
                _consume(conn, k, writer, batches, report, progress, src.estimated_rows)
            finally:
                if conn.in_transaction():
                    conn.rollback()
                writer.close()
                restore()
    except BaseException as exc:
        aborted = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        src.close()
        report.seconds = time.perf_counter() - started
        if aborted is None or report.inserted or report.updated:
            detail = {"file": path.name, "total": report.total, "inserted": report.inserted,
                      "updated": report.updated, "unchanged": report.unchanged, "errors": len(report.errors),
                      "seconds": round(report.seconds, 2)}
            if aborted:
                detail["aborted"] = aborted[:200]
            audit.record(store, principal, "import", kind, [],
                         detail=json.dumps(detail, ensure_ascii=False, separators=(",", ":")))
    return report


def _tune_connection(conn: Connection) -> Callable[[], None]:
    """Settings of the importing SQLite connection; returns the function that puts the pooled connection back.

    - A larger page cache: every row goes into several indexes at random places.
    - No per-row foreign-key probes: every reference a row makes (address, parent address, community, police
      area, grid, owner) was looked up and validated by the importer before the row is written, and the
      registry never deletes addresses, regions or persons' referents; the probes would cost a third of the
      write time at 2.5 million rows. PostgreSQL keeps its checks (they cannot be deferred per session).
    """
    if conn.dialect.name != "sqlite":
        return lambda: None
    if conn.in_transaction():
        conn.commit()
    old_cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    old_fk = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    old_ckpt = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={SQLITE_IMPORT_CHECKPOINT_PAGES}")
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # only outside a transaction; this connection only
    conn.commit()

    def restore() -> None:
        if conn.in_transaction():
            conn.rollback()
        conn.exec_driver_sql(f"PRAGMA cache_size={int(old_cache)}")
        conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if old_fk else 'OFF'}")
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(old_ckpt)}")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        conn.commit()

    return restore


def _consume(conn: Connection, k: _Kind, writer: _Writer, batches: Iterator[_Batch], report: ImportReport,
             progress: Progress | None, estimated: int) -> None:
    """Write the batches, committing every COMMIT_ROWS rows; counts enter the report when their rows commit."""
    pending = [0, 0, 0]
    pending_rows = 0
    commit_every = max(COMMIT_ROWS, 1)
    for b in batches:
        writer.send(b.payload)
        report.errors.extend(b.errors)
        report.total += b.count
        pending[0] += b.inserted
        pending[1] += b.updated
        pending[2] += b.unchanged
        pending_rows += len(b.payload)
        if pending_rows >= commit_every:
            conn.commit()
            report.inserted += pending[0]
            report.updated += pending[1]
            report.unchanged += pending[2]
            pending, pending_rows = [0, 0, 0], 0
        if progress:
            progress(report.total, max(report.total, estimated))
    conn.commit()
    report.inserted += pending[0]
    report.updated += pending[1]
    report.unchanged += pending[2]
    report.errors.sort(key=lambda e: e.row)
    if progress:
        progress(report.total, report.total)


@dataclass
class _Parsed:
    """A chunk of rows in file order, read and checked, and the rows that failed.

    Each row is (row number, cells joined by _SEP, record, prepared row, dedupe key). The cells travel as one
    string (cheaper to send to the writing process) and are only split again if the row turns out bad. Either
    the record is set (the row still has to be resolved against the stored one), or, for a kind that allows it,
    the prepared row: the key was not stored when the chunk was read, so the row is an insert and was already
    put in the writer's form."""

    rows: list[tuple[int, str, dict[str, Any] | None, tuple | None, Any]]
    errors: list[RowError]
    count: int  # non-blank rows of the chunk


_SEP = "\x1f"  # ASCII unit separator: does not occur in the cells of a text file


def _raw(header: list[str], cells: list[str] | str) -> dict[str, str]:
    if isinstance(cells, str):
        cells = cells.split(_SEP)
    return {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header) if h}


def _parse_rows(k: _Kind, writer: _Writer, src: _Source, width: int, chunk: int,
                probe: Connection | None = None, end_reads: bool = False, part: int = 0,
                parts: int = 1) -> Iterator[_Parsed]:
    """Read and check rows (the lookups were loaded when k was made). With a probe connection and a kind whose
    new records need nothing from the database (persons), also find which keys are stored and prepare the
    inserts of the others, so that the writing side only writes them. end_reads: the parsing process ends
    each probe's read transaction.

    The file is cut in chunks of `chunk` data rows (blank ones included, so every reader cuts it alike); this
    call handles the chunks whose number n has n % parts == part, one _Parsed each, in order, and skips the
    others unread but for the CSV/XLSX row structure."""
    header, parse, dedupe_key = src.header, k.parse, k.dedupe_key
    speculate = probe is not None and k.speculative
    rows: list[tuple[int, str, dict[str, Any]]] = []
    errors: list[RowError] = []
    count = 0

    def chunk_out() -> _Parsed:
        nonlocal rows, errors, count
        out: list[tuple[int, str, dict[str, Any] | None, tuple | None, Any]] = []
        if speculate:
            pk = k.probe or k.key  # persons: the ID number's keyed hash, computed while parsing
            keys = [rec[pk] for _, _, rec in rows if not isinstance(rec[k.key], _Masked)]
            stored = set(_stored_keys(probe, k.table.name, pk, keys)) if keys else set()
            if end_reads:
                probe.rollback()  # the parsing process: do not hold a read snapshot while the writer commits
            fresh: list[dict[str, Any]] = []
            fresh_rows: list[tuple[int, str, Any]] = []
            for rownum, joined, rec in rows:
                if isinstance(rec[k.key], _Masked) or rec[pk] in stored:
                    out.append((rownum, joined, rec, None, dedupe_key(rec)))
                    continue
                try:
                    fresh.append(k.resolve(rec, None))
                    fresh_rows.append((rownum, joined, dedupe_key(rec)))
                except RowFault as e:
                    errors.append(RowError(rownum, e.reason, _raw(header, joined)))
            for (rownum, joined, key), prepared in zip(fresh_rows, writer.prepare(fresh), strict=True):
                out.append((rownum, joined, None, prepared, key))
            out.sort(key=operator.itemgetter(0))
        else:
            out = [(rownum, joined, rec, None, dedupe_key(rec)) for rownum, joined, rec in rows]
        parsed = _Parsed(out, errors, count)
        rows, errors, count = [], [], 0
        return parsed

    index, mine, pending = -1, parts == 1, False
    for index, (rownum, cells) in enumerate(src.rows):
        if index % chunk == 0:
            if pending:
                yield chunk_out()
            mine = (index // chunk) % parts == part
            pending = mine
        if not mine:
            continue
        if len(cells) < width:
            if not any(c.strip() for c in cells):
                continue
            cells = cells + [""] * (width - len(cells))
        try:
            rows.append((rownum, _SEP.join(cells), parse(cells)))
        except RowFault as e:
            if not any(c.strip() for c in cells):
                continue
            errors.append(RowError(rownum, e.reason, _raw(header, cells)))
        count += 1
    if pending:
        yield chunk_out()


def _resolve_batches(k: _Kind, writer: _Writer, header: list[str], parsed: Iterator[_Parsed]) -> Iterator[_Batch]:
    """Drop in-file duplicates, resolve each chunk against the database and turn it into what the writer sends.

    Lazy: chunk n+1 is read and resolved after chunk n was written (in the same transaction), so a row sees the
    rows before it, e.g. an address the parent written just before.
    """
    seen, compare = k.seen, k.compare_cols
    key_label = k.key_label
    is_persons = isinstance(k, _Persons)
    for chunk in parsed:
        errors = chunk.errors
        batch = []
        payload: list[tuple] = []
        for rownum, joined, rec, prepared, key in chunk.rows:
            first = seen.get(key)
            if first is not None:
                errors.append(RowError(rownum, f"文件内重复：与第{first}行的{key_label}相同，本行未导入 / duplicate "
                                               f"of row {first}", _raw(header, joined)))
                continue
            seen[key] = rownum
            if prepared is not None:
                payload.append(prepared)
            else:
                batch.append((rownum, joined, rec))
        written: list[dict[str, Any]] = []
        inserted, updated, unchanged = len(payload), 0, 0
        if batch:
            k.prefetch([rec for _, _, rec in batch])
        for rownum, joined, rec in batch:
            try:
                ex = k.existing(rec)
                params = k.resolve(rec, ex)
            except RowFault as e:
                errors.append(RowError(rownum, e.reason, _raw(header, joined)))
                seen.pop(k.dedupe_key(rec), None)
                continue
            if ex is None:
                inserted += 1
                written.append(params)
            elif any(params[c] != ex[c] for c in compare):
                updated += 1
                written.append(params)
            else:
                unchanged += 1
            if is_persons and isinstance(rec.get("record_id"), int):  # masked key: known now by its real one
                seen[int(params["id_number"][:17])] = rownum
        if written:
            payload += writer.prepare(written)
        yield _Batch(payload, chunk.count, inserted, updated, unchanged, errors)


# ---- the parsing process -----------------------------------------------------------------------------------------
def _from_children(url: str, kind: str, path: Path, principal: Principal, present: dict[str, int], now: datetime,
                   width: int, chunk: int, parts: int) -> Iterator[_Parsed]:
    """Start `parts` parsing processes, process i handling chunks n with n % parts == i, and yield the chunks in
    file order. They are stopped if the writing side fails."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork: the caller may be a threaded web server
    procs, receivers = [], []
    for part in range(parts):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, name=f"anfang-import-parser-{part}", daemon=True,
                           args=(sender, url, kind, str(path), principal, present, now, width, chunk, part, parts,
                                 crypto.exported()))
        proc.start()
        sender.close()
        procs.append(proc)
        receivers.append(receiver)

    def receive(part: int) -> Any:
        try:
            msg = receivers[part].recv()
        except EOFError:
            raise RuntimeError("导入解析进程意外退出 / a parsing process died") from None
        if msg[0] == "fail":
            exc = msg[1]
            raise exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        return msg

    finished = False
    try:
        n = 0
        while True:
            msg = receive(n % parts)
            if msg[0] == "done":  # chunk n does not exist, nor any after it
                for part in range(parts):
                    if part != n % parts:
                        receive(part)
                finished = True
                return
            yield msg[1]
            n += 1
    finally:
        for receiver in receivers:
            receiver.close()
        for proc in procs:
            if finished:
                proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)


def _child_main(sender: Any, url: str, kind: str, path: str, principal: Principal, present: dict[str, int],
                now: datetime, width: int, chunk: int, part: int, parts: int, keys: str) -> None:
    """Entry point of the parsing process: load the lookups, then read and check rows in file order. keys: the
    parent's data keys (the parsing process encrypts the new persons' ID numbers and phones)."""
    crypto.configure(crypto.Keyring(crypto.KeyMaterial.from_json(keys)))
    gc.disable()  # this process makes no reference cycles; the collector would walk millions of live rows
    with contextlib.suppress(OSError, AttributeError):
        os.nice(5)  # the single writer is the pipeline's bottleneck: let it have the CPU when it can use it
    store = None
    try:
        store = Store(url)
        src = read_rows(Path(path))
        try:
            with store.engine.connect() as conn:
                k = _KIND_CLASSES[kind](conn, principal, present, now)
                conn.rollback()
                writer = _Writer(conn, k)  # its prepare() half
                probe = conn if k.speculative else None
                for parsed in _parse_rows(k, writer, src, width, chunk, probe=probe, end_reads=True, part=part,
                                          parts=parts):
                    sender.send(("chunk", parsed))
        finally:
            src.close()
        sender.send(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the writing process
        try:
            sender.send(("fail", exc))
        except Exception:  # noqa: BLE001 - unpicklable exception
            sender.send(("fail", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()
        if store is not None:
            store.dispose()
