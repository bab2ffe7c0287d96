"""SIPp — a SIP peer no one here wrote — registers with digest and sends a keepalive to our server.
Skips with the reason when ``sipp`` (Debian package sip-tester) is absent; fails under ANFANG_REQUIRE_SERVICES=1."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from anfang.devices.service import DeviceService
from anfang.gb28181.server import GbConfig, GbServer
from conftest import _service_missing

HERE = Path(__file__).parent / "sipp"
DEVICE = "35040200001320000099"


def _sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        _service_missing("sipp not installed (apt-get install sip-tester)")
    return path  # type: ignore[return-value]


async def _run_sipp(sipp: str, port: int, scenario: str, transport: str, password: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sipp, f"127.0.0.1:{port}", "-sf", str(HERE / scenario), "-s", DEVICE, "-au", DEVICE, "-ap", password,
        "-m", "1", "-l", "1", "-t", transport, "-i", "127.0.0.1", "-p", "0", "-timeout", "15", "-nostdin",
        "-trace_err", "-error_file", "/dev/stderr",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, (err or b"").decode(errors="replace")[-2000:]


@pytest.mark.parametrize(("scenario", "transport"), [("register.xml", "u1"), ("register.xml", "t1"),
                                                     ("keepalive.xml", "u1")])
def test_sipp_device_registers_with_digest(store, scenario: str, transport: str) -> None:
    sipp = _sipp()

    async def run() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, query_on_register=False), store)
        await server.start()
        try:
            code, err = await _run_sipp(sipp, server.port, scenario, transport, "anfang28181")
            assert code == 0, err
            assert server.devices[DEVICE].status == "online"
            if scenario == "keepalive.xml":
                assert server.stats["keepalives"] == 1
            await server.drain()
            dev = DeviceService(store).get("gb28181", DEVICE)
            assert dev.status == "online" and dev.review == "pending"
            assert dev.transport == ("TCP" if transport == "t1" else "UDP")
            # the wrong password: SIPp sees 403 instead of 200 and fails its scenario
            code, _ = await _run_sipp(sipp, server.port, "register.xml", transport, "not-the-password")
            assert code != 0
        finally:
            await server.stop()

    asyncio.run(run())
