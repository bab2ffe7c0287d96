"""Scale-out (issue 15, item 7): a media node in its own process (`anfang media`) announces itself over NATS; the
console gives each new stream to the least-loaded node, the browser connects to that node directly, and the
node's viewings still reach the console's audit chain. Needs the NATS service (skips without it, fails under
ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.devices.service import DeviceService
from anfang.security.models import AuditEntry
from conftest import _service_missing
from liveserver import free_port
from test_video import LIEDONG, SimThread, _wait
from test_web import login
from world import build

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _frames_from(url: str, n: int = 5, timeout: float = 10.0) -> tuple[dict, int]:
    from websockets.sync.client import connect

    meta: dict = {}
    got = 0
    with connect(url, open_timeout=5, max_size=None) as ws:
        deadline = time.monotonic() + timeout
        while got < n and time.monotonic() < deadline:
            msg = ws.recv(timeout=timeout)
            if isinstance(msg, str):
                m = json.loads(msg)
                if m["type"] == "init":
                    meta = m
                assert m["type"] != "error", m
            elif msg[4:8] == b"moof":
                got += 1
    return meta, got


def test_streams_go_to_the_least_loaded_node_and_viewers_connect_there(store, tmp_path) -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError as exc:
        _service_missing(f"NATS not reachable at 127.0.0.1:4222: {exc}")
    build(store)
    subject = f"anfang.media.t{os.urandom(4).hex()}"
    secret = "media-test-secret"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(ANFANG_MEDIA_SECRET=secret, ANFANG_MEDIA_SUBJECT=subject,
               ANFANG_DATA_KEYS=os.environ["ANFANG_DATA_KEYS"])
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "media", "--host", "127.0.0.1",
                             "--port", str(port), "--data-dir", str(node_dir), "--nats-url", "nats://127.0.0.1:4222"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=node_dir)
    sim = SimThread(count=1, channels=3, width=320, height=180, bitrate=300_000)
    dev = sim.sim.devices[0]
    DeviceService(store).upsert("gb28181", dev.device_id, name="列东NVR", community_code=LIEDONG,
                                password=dev.password, type_code="118", review="approved")
    settings = Settings(data_dir=tmp_path, database_url=store.url, sip_enabled=True, sip_port=0,
                        sip_host="127.0.0.1", media_bind_host="127.0.0.1", media_linger=0.5,
                        media_nats_url="nats://127.0.0.1:4222", media_subject=subject, media_secret=secret)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"anfang media exited: {proc.stdout.read().decode()[-2000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        assert _wait(up, timeout=30)
        with TestClient(create_app(settings, store)) as c:
            sim.start(c.app.state.gb28181.port)
            assert _wait(lambda: len(DeviceService(store).channels("gb28181", dev.device_id)) == 3)
            assert _wait(lambda: len(c.app.state.media_nodes.alive()) == 2)  # the remote node announced itself
            login(c, "city")
            a = c.post("/api/video/live", json={"channel_id": dev.channels[0]["channel_id"]}).json()
            b = c.post("/api/video/live", json={"channel_id": dev.channels[1]["channel_id"]}).json()
            assert {a["node_id"], b["node_id"]} == {"350400-media", f"350400-media-{port}"}  # one stream each
            remote = a if a["ws_url"].startswith("ws://") else b
            assert remote["ws_url"].startswith(f"ws://127.0.0.1:{port}/media/ws/")
            meta, got = _frames_from(f"{remote['ws_url']}&token={remote['token']}")
            assert meta["codec"] == "h264" and got == 5
            page = c.get("/video/wall")  # pages allow the browser to reach the node
            assert f"ws://127.0.0.1:{port}" in page.headers["content-security-policy"]

            def closed() -> bool:
                with store.session() as s:
                    return bool(s.scalars(select(AuditEntry).where(AuditEntry.action == "video.live.close",
                                                                   AuditEntry.client == "media")).all())
            assert _wait(closed, timeout=10)  # the remote node's viewing is in the console's audit chain
            assert _wait(lambda: sim.sim.streams == 0, timeout=10)  # BYE for both after the linger
    finally:
        proc.terminate()
        proc.wait(10)
        sim.stop()
