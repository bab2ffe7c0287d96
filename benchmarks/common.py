"""Shared helpers of the benchmarks: scratch databases, Rich output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
sys.path.insert(0, str(ROOT.parent / "src"))

PG_URL = os.environ.get("ANFANG_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
console = Console(width=None if sys.stdout.isatty() else 150)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), console=console)


def db_url(db: str, persons: int, pg_url: str = PG_URL) -> str:
    """The benchmark database of a size: a SQLite file under benchmarks/out, or a scratch PostgreSQL database on
    the server of pg_url."""
    if db == "sqlite":
        return f"sqlite:///{OUT / f'bench_{persons}.db'}"
    base = make_url(pg_url)
    tag = os.environ.get("ANFANG_BENCH_DB_TAG", "")  # keeps parallel runs (several worktrees) apart
    return base.set(database=f"anfang_bench_{persons}{tag}").render_as_string(hide_password=False)


def fresh_database(db: str, persons: int, pg_url: str = PG_URL) -> str:
    """Drop and re-create the benchmark database; returns its URL (not yet migrated)."""
    url = db_url(db, persons, pg_url)
    reset_database(db, url, pg_url)
    return url


def reset_database(db: str, url: str, pg_url: str = PG_URL) -> None:
    """Make the database at ``url`` empty: SQLite file (and its WAL) removed, PostgreSQL database re-created."""
    if db == "sqlite":
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    name = make_url(url).database
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def save_results(name: str, results: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"results_{name}.json"
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    return path
