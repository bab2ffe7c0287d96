"""GB/T 28181 lock-out behind NAT (issue 17, item 7): wrong passwords lock out the failing device id only — the
correct devices behind the same address keep registering; each lock-out is logged and raised as a security alert
with the device and the address; an administrator lifts it; only garbage (invalid ids, malformed digests) counts
per address, with a much higher limit."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from structlog.testing import capture_logs

from anfang.gb28181.server import GbServer
from anfang.gb28181.simulator import Simulator
from anfang.security import monitoring
from anfang.security.models import AccessAlert
from anfang.security.scope import Principal
from anfang.store.engine import Store
from test_gb28181_server import _config, _wait


def test_one_misconfigured_camera_does_not_lock_out_its_neighbours_behind_nat(store: Store) -> None:
    async def scenario() -> None:
        server = GbServer(_config(lockout_failures=3, query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=5, channels=0)  # five cameras, one address
        try:
            await sim.start(register=False, keepalive=False)
            bad, *good = sim.devices
            for _ in range(6):  # the misconfigured one keeps retrying, past the limit
                assert await sim.register(bad, password="wrong") == 403
            assert await sim.register(bad) == 403  # locked: even the right password now
            for dev in good:  # four more fail once each from the same address, then get it right
                assert await sim.register(dev, password="typo") == 403
                assert await sim.register(dev) == 200
            assert all(server.devices[d.device_id].registered for d in good)
            # an administrator lifts the lock-out (from the security alert); the device registers at once
            assert await _wait(lambda: _alerts(store, "sip_lockout"), 5.0)
            assert monitoring.unlock_device(store, Principal.system("admin"), bad.device_id) == 1
            assert await _wait_register(sim, bad)
        finally:
            await sim.stop()
            await server.stop()

    with capture_logs() as logs:
        asyncio.run(scenario())
    locks = [e for e in logs if e["event"] == "gb28181_lockout"]
    assert len(locks) == 1 and locks[0]["device_id"] and locks[0]["address"] == "127.0.0.1"
    alert = _alerts(store, "sip_lockout")[0]
    assert alert.acknowledged_at is not None and "127.0.0.1" in alert.detail and alert.client == "127.0.0.1"


async def _wait_register(sim: Simulator, dev, timeout: float = 6.0) -> bool:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await sim.register(dev) == 200:
            return True
        await asyncio.sleep(0.3)
    return False


def _alerts(store: Store, kind: str) -> list[AccessAlert]:
    with store.session() as s:
        rows = list(s.scalars(select(AccessAlert).where(AccessAlert.kind == kind)))
        s.expunge_all()
    return rows


def test_garbage_from_one_address_locks_the_address_at_a_higher_limit(store: Store) -> None:
    async def scenario() -> tuple[int, int]:
        server = GbServer(_config(lockout_failures=2, allow_unknown=False, query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=0)
        try:
            await sim.start(register=False, keepalive=False)
            dev = sim.devices[0]
            real = dev.device_id
            first = 0
            for i in range(2 * 10):  # ids that are not GB/T 28181 ids at all
                dev.device_id = f"garbage-{i}"
                first = await sim.register(dev)
            dev.device_id = real
            before = await sim.register(dev)  # unknown and closed: refused, but not as locked
            for i in range(2 * 10):
                dev.device_id = f"garbage-x{i}"
                await sim.register(dev)
            dev.device_id = real
            await asyncio.sleep(0.1)
            return first, before
        finally:
            await sim.stop()
            await server.stop()

    with capture_logs() as logs:
        first, _ = asyncio.run(scenario())
    assert first == 403
    locks = [e for e in logs if e["event"] == "gb28181_lockout"]
    assert len(locks) == 1 and locks[0]["address"] == "127.0.0.1" and locks[0]["kind"] == "address"


def test_cli_unlock_acknowledges_the_lockout_alert(store: Store, monkeypatch) -> None:
    from typer.testing import CliRunner

    from anfang.cli import app

    alert_id = monitoring.gb_lockout_alert(store, "sip_lockout", "35040200001320000009", "10.1.2.3", 5, 10)
    monkeypatch.setenv("ANFANG_DATABASE_URL", store.url)
    out = CliRunner().invoke(app, ["gb28181", "unlock", "35040200001320000009"])
    assert out.exit_code == 0, out.output
    assert monitoring.lifted(store, [alert_id]) == [alert_id]
