"""Nothing accepted is lost after the commit (issue 17, item 1): a real `anfang serve` process on the embedded bus is
killed with SIGKILL right after answering 202 to a burst of perimeter alarms; after a restart every accepted event
has exactly one warning (the consumers' durable cursors replay `event_log`, idempotently by event id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

import anfang
from anfang.bus import InProcessBus
from anfang.core.events import Event, EventKind
from anfang.devices.service import DeviceService
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecorder
from anfang.store.migrate import upgrade
from anfang.warnings.engine import WarningEngine
from anfang.warnings.models import Warning, WebhookDelivery
from anfang.warnings.push import WebhookSender
from anfang.warnings.service import Candidate, WarningService
from liveserver import free_port

N_ALARMS = 300


def _start(data_dir: Path, port: int, log_name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env["ANFANG_DATA_KEYS"] = os.environ["ANFANG_DATA_KEYS"]
    # the server runs the same sources as this test (a relative PYTHONPATH would not survive the cwd change)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(anfang.__file__).resolve().parents[1]),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    log = (data_dir / log_name).open("w")
    return subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "serve", "--data-dir",
                             str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
                            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_healthy(proc: subprocess.Popen, base: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"anfang serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("anfang serve did not become healthy")
        time.sleep(0.1)


async def _burst(base: str, device: str, n: int) -> list[str]:
    """POST n perimeter alarms (distinct zones: n different warnings), 32 at a time; the accepted event ids."""
    accepted: list[str] = []
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async def one(i: int) -> None:
            async with sem:
                r = await client.post(f"/api/iot/perimeter/{device}", json={"zone": f"Z{i:04d}", "alarm": True})
                if r.status_code == 202:
                    accepted.append(r.json()["event_id"])
        await asyncio.gather(*(one(i) for i in range(n)))
    return accepted


def _lag(text: str) -> tuple[float, float] | None:
    """(events recorded after the warning engine's saved cursor, events in its queue) from /metrics."""
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
           if s.labels.get("consumer") == "warnings"}
    if "anfang_bus_consumer_lag_events" not in got or "anfang_bus_consumer_queued" not in got:
        return None
    return got["anfang_bus_consumer_lag_events"], got["anfang_bus_consumer_queued"]


def test_every_accepted_event_gives_exactly_one_warning_after_sigkill(tmp_path: Path) -> None:
    db_url = f"sqlite:///{(tmp_path / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    DeviceService(store).upsert("mqtt", "perimeter-kill", name="周界测试")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, "server1.log")
    try:
        _wait_healthy(proc, base, tmp_path / "server1.log")
        accepted = asyncio.run(_burst(base, "perimeter-kill", N_ALARMS))
        os.kill(proc.pid, signal.SIGKILL)  # right after the last 202: the in-memory queue still holds work
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(accepted) == N_ALARMS

    proc = _start(tmp_path, port, "server2.log")
    try:
        _wait_healthy(proc, base, tmp_path / "server2.log")
        wanted = set(accepted)
        # the consumer's progress as an operator sees it: /metrics (this host is on the allow-list)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lag = _lag(httpx.get(base + "/metrics/prometheus", timeout=5).text)
            if lag == (0.0, 0.0):
                break
            time.sleep(0.2)
        assert lag == (0.0, 0.0), f"consumer still behind: (events after cursor, queued) = {lag}"
        with store.session() as s:
            ids = list(s.scalars(select(Warning.event_id).where(Warning.rule == "alarm.perimeter_intrusion")))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        store.dispose()
    counts = Counter(ids)
    missing = wanted - set(counts)
    doubled = [i for i, c in counts.items() if c > 1]
    assert not missing, f"{len(missing)} of {len(wanted)} accepted alarms never became a warning"
    assert not doubled, f"{len(doubled)} events made more than one warning"


# ---- the embedded bus's durable cursor, in-process (both backends) ------------------------------------------------
def _alarm(i: int) -> Event:
    return Event(kind=EventKind.alarm, source="perimeter-x", data={"alarm_type": "perimeter_intrusion",
                                                                  "priority": 1, "zone": f"Z{i}"})


def test_durable_consumer_replays_what_it_never_handled_and_never_twice(store: Store) -> None:
    service = WarningService(store)

    async def first_life() -> list[str]:
        bus = InProcessBus(store)
        engine = WarningEngine(store, bus, service)
        await engine.start()
        await bus.drain()
        recorder = EventRecorder(store, bus)
        events = [_alarm(i) for i in range(40)]
        await engine.stop()  # the consumer is gone (a crash) while events keep being accepted and committed
        for e in events[:25]:
            await recorder.record(e)
        return [e.id for e in events[:25]]

    ids = asyncio.run(first_life())
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Warning)) == 0

    async def second_life() -> int:
        bus = InProcessBus(store)
        engine = WarningEngine(store, bus, service)
        await engine.start()
        await bus.drain()
        replayed = bus.cursors()[0]["replayed"]
        await bus.close()
        return replayed

    assert asyncio.run(second_life()) >= 25
    assert asyncio.run(second_life()) >= 25  # within the replay margin everything comes again: idempotent
    with store.session() as s:
        got = Counter(s.scalars(select(Warning.event_id)))
    assert set(got) == set(ids) and set(got.values()) == {1}


# ---- webhooks: a delivery outbox written with the warning, retried with back-off, surviving restarts --------------
class _Receiver:
    """A real HTTP server on a free port that answers 503 until told to accept, recording each accepted body."""

    def __init__(self) -> None:
        self.accept = False
        self.bodies: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if outer.accept:
                    outer.bodies.append(json.loads(body))
                self.send_response(200 if outer.accept else 503)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_retries_with_backoff_and_survives_a_restart(store: Store) -> None:
    rx = _Receiver()
    try:
        service = WarningService(store)
        sender = WebhookSender(store, [rx.url], base_delay_s=0.05, poll_s=0.05)
        service.hooks.append(sender.enqueue)
        v = service.raise_warning(Candidate(rule="alarm.perimeter_intrusion", category="alarm", title="周界入侵",
                                            source="p1", dedup_key="alarm:p1:Z1", event=_alarm(1)))
        assert v is not None

        async def run_for(seconds: float, s: WebhookSender) -> None:
            await s.start()
            await asyncio.sleep(seconds)
            await s.stop()

        asyncio.run(run_for(0.6, sender))  # receiver answers 503: retried, then the process "dies"
        with store.session() as s:
            d = s.scalar(select(WebhookDelivery))
            assert d.state == "pending" and d.attempts >= 2 and d.last_error
        rx.accept = True
        restarted = WebhookSender(store, [rx.url], base_delay_s=0.05, poll_s=0.05)
        asyncio.run(run_for(0.1, restarted))
        deadline = time.monotonic() + 10
        while not rx.bodies and time.monotonic() < deadline:
            asyncio.run(run_for(0.2, restarted))  # the back-off delay may still be running
        asyncio.run(run_for(0.3, restarted))  # a second send would show up now
        assert [b["warning"]["uid"] for b in rx.bodies] == [v["uid"]]
        assert rx.bodies[0]["step"] == "raised"
        with store.session() as s:
            assert s.scalar(select(WebhookDelivery.state)) == "sent"
    finally:
        rx.close()
