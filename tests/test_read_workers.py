"""Reader processes (`anfang serve --read-workers N --read-port P`, issue 17 item 5): the police person search is
answered on the read port as on the primary and audited; writes there are refused with 421; the bulk-read alert
counts reads made through every process once."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.security import audit
from anfang.security.models import AccessAlert, AuditEntry
from anfang.store.engine import Store
from liveserver import anfang_serve, free_port
from world import PASSWORD, build

LIMIT = 3  # monitor_min_reads: the 4th person read today is one too many


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.2)


def _bulk_alerts(db_url: str) -> list[AccessAlert]:
    store = Store(db_url)
    try:
        with store.session() as s:
            return list(s.scalars(select(AccessAlert).where(AccessAlert.kind == "bulk_read")))
    finally:
        store.dispose()


def test_read_port_answers_searches_refuses_writes_and_counts_reads_once(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    build(store)
    store.dispose()
    read_port = free_port()
    env = {"ANFANG_DATABASE_URL": db_url, "ANFANG_MONITOR_MIN_READS": str(LIMIT),
           "ANFANG_MONITOR_QUIET_HOURS": "[0, 0]"}
    with anfang_serve(tmp_path, env, args=["--read-workers", "1", "--read-port", str(read_port)]) as primary:
        reader = f"http://127.0.0.1:{read_port}"
        _wait(reader + "/healthz")
        token = httpx.post(primary + "/api/auth/login", json={"username": "police", "password": PASSWORD}).json()
        h = {"Authorization": f"Bearer {token['token']}"}

        # the same search, the same answer, on both ports (the session was made on the primary)
        search = {"size": 1}
        on_reader = httpx.get(reader + "/api/persons", params=search, headers=h)
        assert on_reader.status_code == 200, on_reader.text
        assert len(on_reader.json()["items"]) == 1
        on_primary = httpx.get(primary + "/api/persons", params=search, headers=h)
        assert on_reader.json() == on_primary.json()

        # writes, and reads of the primary's live state, are sent back with 421 and the JSON error object
        r = httpx.post(reader + "/api/persons", json={"name": "新人"}, headers=h)
        assert r.status_code == 421 and r.json()["error"]["code"] == "read_only"
        assert "主服务" in r.json()["error"]["message"]
        assert httpx.post(reader + "/api/auth/login", json={"username": "police", "password": PASSWORD}
                          ).status_code == 421
        assert httpx.get(reader + "/api/warnings/stream", headers=h, timeout=5).status_code == 421

        # two reads so far (one per port), one person each; two more: the 4th passes the limit of 3
        assert _bulk_alerts(db_url) == []
        assert httpx.get(reader + "/api/persons", params=search, headers=h).status_code == 200  # 3rd: at the limit
        assert _bulk_alerts(db_url) == []
        assert httpx.get(primary + "/api/persons", params=search, headers=h).status_code == 200  # 4th: above it
        found = _bulk_alerts(db_url)
        assert len(found) == 1 and found[0].username == "police"
        assert "今日已读取4人" in found[0].detail and f"阈值{LIMIT}" in found[0].detail

    store = Store(db_url)
    try:
        with store.session() as s:  # every search is in the chain, whichever process answered it
            reads = s.scalars(select(AuditEntry.entity_ids).where(AuditEntry.username == "police",
                                                                  AuditEntry.action == "read",
                                                                  AuditEntry.entity == "person")).all()
        assert len(reads) == 4
        result = audit.verify(store)
        assert result.ok, result.problems
    finally:
        store.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_get_route_of_a_reader_fails_with_500(db_url: str, tmp_path: Path) -> None:
    """A reader starts no background service (SIP, media node, bus, ingest): every GET route answers, with a 4xx
    where it needs the primary, never a 500."""
    from abuse import routes

    store = Store(db_url)
    build(store)
    settings = Settings(data_dir=tmp_path, database_url=db_url, sip_enabled=True, sip_port=0)
    with TestClient(create_app(settings, store)) as primary:
        token = primary.post("/api/auth/login", json={"username": "city", "password": PASSWORD}).json()["token"]
        assert primary.app.state.bus._subs  # the primary's consumers (warning engine, terminal push, ...)
    app = create_app(settings, store, reader=True)
    failures = []
    with TestClient(app, raise_server_exceptions=False) as c:
        assert not app.state.bus._subs  # no consumer subscribed: nothing handles events here
        for route in routes(app):
            if route.method != "GET":
                continue
            path = re.sub(r"\{[^}:]+(:path)?\}", "1", route.path)
            for headers in ({"Authorization": f"Bearer {token}"},
                            {"Cookie": f"anfang_session={token}", "Accept": "text/html"}):
                r = c.get(path, headers=headers)
                if r.status_code >= 500:
                    failures.append(f"{r.status_code} GET {path}: {r.text[:120]}")
        assert c.get("/api/video/tree", headers={"Authorization": f"Bearer {token}"}).status_code == 421
    store.dispose()
    assert failures == []


def test_processes_passing_the_limit_at_once_open_one_alert(store, tmp_path: Path) -> None:
    """Each server process has its own AccessMonitor; when several pass an account's limit at the same moment they
    fold into one open alert instead of opening one each."""
    import threading

    from anfang.security.monitoring import AccessMonitor

    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    users = [w.users[name] for name in ("police", "grid", "city")]
    for p in users:
        monitors = [AccessMonitor(store, settings) for _ in range(8)]  # eight processes' monitors
        start = threading.Barrier(len(monitors))

        def raise_one(m: AccessMonitor, p=p, start=start) -> None:  # noqa: ANN001
            start.wait()
            m.raise_alert("bulk_read", p, "今日已读取600人", once_per_day=True)

        threads = [threading.Thread(target=raise_one, args=(m,)) for m in monitors]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with store.session() as s:
        found = list(s.scalars(select(AccessAlert).where(AccessAlert.kind == "bulk_read")))
    assert sorted(a.username for a in found) == sorted(p.username for p in users)  # one alert per account
    assert all(a.count == 8 for a in found)  # the other processes folded into it
