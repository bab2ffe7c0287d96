"""Live video end to end (issue 15): a simulated GB/T 28181 camera streams real H.264 / H.265 in PS over RTP when
anfang INVITEs it; the console opens the stream on demand, shares it between viewers, sends fragmented MP4 over a
WebSocket, ends it with BYE after the last viewer, and keeps every viewing in scope and in the audit chain."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from anfang.app import create_app
from anfang.config import Settings
from anfang.devices.service import DeviceService
from anfang.gb28181.simulator import Simulator
from anfang.security.models import AuditEntry
from test_web import login
from world import build

LIEDONG, FUXI = "350404001001", "350405001001"
# The storage layer is not what these tests are about (one store is enough; the store tests cover both)
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class SimThread:
    """A simulator on its own event loop in a thread (the app runs on the TestClient's loop)."""

    def __init__(self, **kw) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(("127.0.0.1", 1), heartbeat=1.0, **kw)

    def run(self, coro, timeout: float = 20.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, port: int) -> None:
        self.sim.server = ("127.0.0.1", port)
        self.run(self.sim.start())

    def stop(self) -> None:
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _wait(cond, timeout: float = 10.0, step: float = 0.05) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


@pytest.fixture
def video(store, tmp_path) -> Iterator[tuple[TestClient, SimThread, list]]:
    """The app with its SIP server and embedded media node; two simulated devices (列东社区 and 府西社区), the
    first with an H.265 last channel."""
    build(store)
    sim = SimThread(count=2, channels=2, h265_last_channel=True, width=320, height=180, fps=25, bitrate=300_000)
    devs = sim.sim.devices
    svc = DeviceService(store)
    for dev, comm in zip(devs, (LIEDONG, FUXI), strict=True):
        svc.upsert("gb28181", dev.device_id, name=f"{comm}NVR", community_code=comm, password=dev.password,
                   type_code="118", review="approved")
    settings = Settings(data_dir=tmp_path, database_url=store.url, sip_enabled=True, sip_port=0,
                        sip_host="127.0.0.1", media_bind_host="127.0.0.1", media_linger=0.5, media_timeout=4.0)
    try:
        with TestClient(create_app(settings, store)) as c:
            sim.start(c.app.state.gb28181.port)
            assert _wait(lambda: all(len(svc.channels("gb28181", d.device_id)) == 2 for d in devs))
            yield c, sim, devs
    finally:
        sim.stop()  # after the app: its shutdown still says BYE to the cameras


def _read(ws, fragments: int = 10, timeout: float = 10.0) -> tuple[dict, bytes, list[bytes]]:  # noqa: ANN001
    init_json: dict = {}
    init_seg = b""
    frags: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frags) < fragments and time.monotonic() < deadline:
        msg = ws.receive()
        if msg.get("text"):
            import json

            m = json.loads(msg["text"])
            if m["type"] == "init":
                init_json = m
            elif m["type"] == "error":
                raise AssertionError(m["message"])
        elif msg.get("bytes"):
            data = msg["bytes"]
            if data[4:8] == b"ftyp":
                init_seg = data
            else:
                assert data[4:8] == b"moof"
                frags.append(data)
    return init_json, init_seg, frags


def _open(c: TestClient, channel: str, **extra) -> dict:  # noqa: ANN003
    r = c.post("/api/video/live", json={"channel_id": channel, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def _ws(c: TestClient, info: dict):  # noqa: ANN202
    return c.websocket_connect(f"{info['ws_url']}&token={info['token']}")


def test_live_on_demand_shared_and_ended_after_the_last_viewer(video) -> None:
    c, sim, devs = video
    dev = devs[0]
    channel = dev.channels[0]["channel_id"]
    login(c, "property")
    first = _open(c, channel)
    with _ws(c, first) as ws1:
        meta, init, frags = _read(ws1, fragments=10)
        assert meta["codec"] == "h264" and (meta["width"], meta["height"]) == (320, 180)
        assert meta["mime"].startswith('video/mp4; codecs="avc1.')
        assert init[4:8] == b"ftyp" and b"avcC" in init and len(frags) == 10
        second = _open(c, channel)
        started = time.monotonic()
        with _ws(c, second) as ws2:
            _meta2, init2, frags2 = _read(ws2, fragments=1)
            assert init2 == init and time.monotonic() - started < 1.0  # from the GOP cache, at once
        assert dev.invites == 1 and sim.sim.streams == 1  # one device stream for both viewers
    assert _wait(lambda: sim.sim.streams == 0, timeout=6)  # BYE after the linger
    assert "BYE" in dev.received
    with c.app.state.store.session() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.action.like("video.live%"))))
    actions = [e.action for e in entries]
    assert actions.count("video.live.open") == 2 and actions.count("video.live.close") == 2
    # who watched which channel, from when to when (数据流向可知)
    for e in entries:
        assert e.username == "property" and e.entity_ids == [channel], e
    closes = [e.detail for e in entries if e.action == "video.live.close"]
    assert all(re.search(r"from \d{4}-\d\d-\d\dT[\d:]+\+00:00 to \d{4}-\d\d-\d\dT[\d:]+\+00:00 \(\d+ s\)", d)
               for d in closes), closes


def test_scope_and_tokens(video) -> None:
    c, _sim, devs = video
    mine, other = devs[0].channels[0]["channel_id"], devs[1].channels[0]["channel_id"]
    login(c, "property")
    tree = c.get("/api/video/tree").json()  # his community's channels only, under its name
    assert [x["name"] for x in tree["communities"]] == ["列东社区"]
    assert {ch["channel_id"] for p in tree["communities"][0]["places"] for ch in p["channels"]} == {
        ch["channel_id"] for ch in devs[0].channels}
    r = c.post("/api/video/live", json={"channel_id": other})
    assert r.status_code == 403 and "辖区" in r.json()["error"]["message"]
    assert c.post("/api/video/live", json={"channel_id": "35040400001310099999"}).status_code == 404
    info = _open(c, mine)
    forged = info["token"][:-2] + ("AA" if not info["token"].endswith("AA") else "BB")
    with pytest.raises(WebSocketDisconnect) as exc, _ws(c, {**info, "token": forged}) as ws:
        ws.receive()
    assert exc.value.code == 4403
    login(c, "city")
    theirs = _open(c, other)
    # a token for one channel opens no other stream
    with pytest.raises(WebSocketDisconnect) as exc, c.websocket_connect(
            f"{theirs['ws_url']}&token={info['token']}") as ws:
        ws.receive()
    assert exc.value.code == 4403
    login(c, "resident")
    assert c.post("/api/video/live", json={"channel_id": mine}).status_code == 403


def test_h265_channel_is_transcoded_only_for_a_viewer_that_needs_it(video) -> None:
    c, _sim, devs = video
    channel = devs[0].channels[-1]["channel_id"]
    login(c, "city")
    with _ws(c, _open(c, channel, h265=False)) as ws:
        meta, init, frags = _read(ws, fragments=5)
        assert meta["codec"] == "h264" and b"avcC" in init and frags
        stream = next(iter(c.app.state.media_node.streams.values()))
        assert stream.source_codec == "h265" and stream.transcoder is not None
    with _ws(c, _open(c, channel, h265=True)) as ws:
        meta, init, frags = _read(ws, fragments=3)
        assert meta["codec"] == "h265" and b"hvcC" in init and frags
        stream = next(iter(c.app.state.media_node.streams.values()))
        assert stream.transcoder is None  # nobody needs H.264: no CPU spent


def test_snapshot_is_a_watermarked_export(video) -> None:
    from anfang.security.records import ExportRecord

    c, _sim, devs = video
    login(c, "property")
    r = c.get(f"/api/video/snapshot/{devs[0].channels[0]['channel_id']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    with c.app.state.store.session() as s:
        assert s.scalars(select(ExportRecord).where(ExportRecord.kind == "video-snapshot")).all()


def test_device_that_sends_nothing_gets_a_clear_message(video) -> None:
    c, _sim, devs = video
    devs[0].send_media = False
    login(c, "city")
    info = _open(c, devs[0].channels[0]["channel_id"])
    started = time.monotonic()
    with _ws(c, info) as ws, pytest.raises(AssertionError, match="未发送视频"):
        _read(ws, fragments=1, timeout=10)
    assert time.monotonic() - started < 8


def test_offline_device_is_refused_at_once(video) -> None:
    c, sim, devs = video
    sim.sim.power_off(devs[1])
    server = c.app.state.gb28181
    server.devices[devs[1].device_id].status = "offline"
    login(c, "city")
    r = c.post("/api/video/live", json={"channel_id": devs[1].channels[0]["channel_id"]})
    assert r.status_code == 503 and "离线" in r.json()["error"]["message"]


def test_warning_links_to_cameras_configured_or_at_its_place(video, store) -> None:
    import uuid

    from anfang.devices.models import Device
    from anfang.registry.models import Address
    from anfang.warnings.models import Warning as WarningRow

    c, _sim, devs = video
    with store.session() as s:
        addr = s.scalar(select(Address).where(Address.community_code == LIEDONG, Address.level == "building")
                        .limit(1))
        s.query(Device).filter(Device.device_id == devs[0].device_id).update({"address_id": addr.id})
        w = WarningRow(uid=str(uuid.uuid4()), rule="perimeter.intrusion", category="alarm", title="周界入侵报警",
                       source="perimeter-x", dedup_key="t", county_code=LIEDONG[:6], community_code=LIEDONG,
                       address_id=addr.id, police_area_id=addr.police_area_id, notify_roles="police")
        s.add(w)
        s.flush()
        wid = w.id
    login(c, "police")
    got = c.get(f"/api/video/links?warning_id={wid}").json()["channels"]
    assert [x["channel_id"] for x in got] == [ch["channel_id"] for ch in devs[0].channels]  # same address
    assert {x["reason"] for x in got} == {"address"}
    # the officer may watch the linked camera from the warning even where the camera is not his to browse
    r = c.post("/api/video/live", json={"channel_id": got[0]["channel_id"], "warning_id": wid})
    assert r.status_code == 200, r.text
    DeviceService(store).upsert("mqtt", "perimeter-x", name="周界", community_code=LIEDONG)
    login(c, "property")
    chosen = devs[0].channels[1]["channel_id"]
    assert c.put("/api/video/links/perimeter-x", json={"channels": [chosen]}).status_code == 200
    assert c.put("/api/video/links/perimeter-x",
                 json={"channels": [devs[1].channels[0]["channel_id"]]}).status_code == 422  # not his camera
    login(c, "police")
    got = c.get(f"/api/video/links?warning_id={wid}").json()["channels"]
    assert [(x["channel_id"], x["reason"]) for x in got] == [(chosen, "configured")]
    login(c, "resident")
    assert c.get(f"/api/video/links?warning_id={wid}").status_code in (403, 404)


def test_channel_page_and_device_page_show_the_channel_live(video, store) -> None:
    from anfang.devices.models import Device

    c, _sim, devs = video
    mine, other = devs[0].channels[0]["channel_id"], devs[1].channels[0]["channel_id"]
    login(c, "property")
    r = c.get(f"/video/channel/{mine}")
    assert r.status_code == 200, r.text
    assert f'data-live-channel="{mine}"' in r.text and "/static/player.js" in r.text  # it starts playing at once
    assert f"/video/playback?channel={mine}" in r.text  # and leads to its recordings
    assert c.get(f"/video/channel/{other}").status_code == 403  # another community's camera
    with store.session() as s:
        pk = s.scalar(select(Device.id).where(Device.device_id == devs[0].device_id))
    page = c.get(f"/devices/{pk}").text
    assert f'data-live-open="{mine}"' in page and f'href="/video/channel/{mine}"' in page


def test_officers_and_county_admins_watch_their_own_jurisdiction_only(video) -> None:
    c, _sim, devs = video
    other = devs[1].channels[0]["channel_id"]  # 府西社区, another county
    for user in ("police", "county"):  # the officer's 警务区 and the county admin's county both hold 列东 only
        login(c, user)
        assert [x["name"] for x in c.get("/api/video/tree").json()["communities"]] == ["列东社区"], user
        r = c.post("/api/video/live", json={"channel_id": other})
        assert r.status_code == 403 and "辖区" in r.json()["error"]["message"], user
        assert c.get(f"/api/video/snapshot/{other}").status_code == 403, user
    login(c, "city")
    assert {x["name"] for x in c.get("/api/video/tree").json()["communities"]} == {"列东社区", "府西社区"}
