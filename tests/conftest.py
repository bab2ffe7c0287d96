"""Shared fixtures. Every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the local service (ANFANG_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test). Where it
is absent the PostgreSQL half skips with the reason, except when ANFANG_REQUIRE_SERVICES=1 (set by .ci/run), where
an absent service is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from anfang.store.engine import Store
from anfang.store.migrate import upgrade

# One fixed data key set for the whole run (anfang.security.crypto): the test process, the apps it builds and the
# servers it starts (browser tests) must all decrypt what the others wrote.
os.environ.setdefault("ANFANG_DATA_KEYS", (
    '{"version": 1, "primary": "ktest0001", "keys": {"ktest0001": "dGVzdC1rZXktYW5mYW5nLTMyLWJ5dGVzLWxvbmchISE="}, '
    '"index_key": "dGVzdC1pbmRleC1rZXktYW5mYW5nLTMyLWJ5dGVzLWxvbmc="}'))

# No "access at unusual hours" alerts by the wall clock (00:00-06:00 Beijing time is 16:00-22:00 UTC): tests that
# want them set monitor_quiet_hours themselves.
os.environ.setdefault("ANFANG_MONITOR_QUIET_HOURS", "[0, 0]")

PG_ADMIN_URL = os.environ.get("ANFANG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("ANFANG_REQUIRE_SERVICES") == "1"


def _service_missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable under CI: {reason}")
    pytest.skip(reason)


def _pg_admin():
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is absent
        engine.dispose()
        _service_missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    return engine


def _base_url(url: str) -> str:
    return url.rsplit("/", 1)[0]


@pytest.fixture(autouse=True)
def _data_keys_restored() -> Iterator[None]:
    """A command run in-process (CliRunner, also in a module fixture) installs its data directory's keys process-wide;
    after each test the run's one key set (ANFANG_DATA_KEYS above) is put back, or later tests would encrypt and
    decrypt with a stranger's keys."""
    from anfang.security import crypto

    yield
    crypto.configure(None)  # reloaded from the environment on first use


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at production cost dominates the small fixtures' build time; no test here is about its cost."""
    from argon2 import PasswordHasher

    from anfang.security import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database made once per run; each test's database is a copy of it."""
    admin = _pg_admin()
    name = f"anfang_tpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(f"{_base_url(PG_ADMIN_URL)}/{name}")
    try:
        yield name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin()
    name = f"anfang_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    url = f"{_base_url(PG_ADMIN_URL)}/{name}"
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A migrated, empty database URL: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'anfang.db'}"
        upgrade(url)
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def empty_url(tmp_path, db_url: str) -> Iterator[str]:
    """An empty database (no migrations yet) on the same backend as db_url: for the tests of one migration."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = _pg_admin()
    name = f"anfang_m_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{_base_url(PG_ADMIN_URL)}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
