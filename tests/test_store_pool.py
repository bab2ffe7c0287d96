"""The PostgreSQL pool hands out working connections without a ping per checkout (issue 17, item 5): a connection
that sat idle is pinged and replaced when the server dropped it; one just used is handed out as it is."""

from __future__ import annotations

from sqlalchemy import text

from anfang.store import engine as engine_module
from anfang.store.engine import Store


def _backend_pid(store: Store) -> int:
    with store.engine.connect() as c:
        return c.scalar(text("SELECT pg_backend_pid()"))


def test_idle_connection_dropped_by_the_server_is_replaced(pg_url: str, monkeypatch) -> None:
    store = Store(pg_url)
    try:
        pid = _backend_pid(store)  # one pooled connection, now back in the pool
        admin = Store(pg_url)
        with admin.engine.connect() as c:
            assert c.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()
        monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # it has been idle "long enough"
        with store.session() as s:
            assert s.scalar(text("SELECT 1")) == 1  # not "server closed the connection"
        assert _backend_pid(store) != pid
    finally:
        store.dispose()


def test_recently_used_connection_is_not_pinged(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        _backend_pid(store)  # one pooled connection, just used
        pings = []
        real = store.engine.dialect.do_ping
        store.engine.dialect.do_ping = lambda c: pings.append(1) or real(c)  # type: ignore[method-assign]
        with store.session() as s:
            s.execute(text("SELECT 3"))
        assert pings == []
    finally:
        store.dispose()
