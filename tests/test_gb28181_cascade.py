"""Cascade: a lower anfang registers to an upper anfang with digest, keeps alive, answers the upper's Catalog with
the shared channels only (Chinese names, civil codes, one virtual organisation), and forwards their alarms."""

from __future__ import annotations

import asyncio

from anfang.bus import InProcessBus
from anfang.core.events import EventKind
from anfang.devices.models import Channel
from anfang.devices.service import DeviceService
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.store.engine import Store
from anfang.store.migrate import upgrade

UPPER_ID = "35000000002000000001"  # 福建省 platform
LOWER_ID = "35040000002000000001"  # 三明市 platform


async def _wait(cond, timeout: float = 8.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_lower_registers_to_upper_which_sees_the_shared_catalog(store: Store, tmp_path) -> None:
    upper_url = f"sqlite:///{tmp_path / 'upper.db'}"
    upgrade(upper_url)
    upper_store = Store(upper_url)
    upper_events = []

    async def scenario() -> None:
        bus = InProcessBus()

        async def collect(e):
            upper_events.append(e)

        await bus.subscribe(collect, kinds=[EventKind.alarm])
        upper = GbServer(GbConfig(server_id=UPPER_ID, host="127.0.0.1", port=0, password="upper-secret",
                                  heartbeat_interval=0.5, tick=0.1, query_on_register=False), upper_store, bus)
        await upper.start()
        lower = GbServer(GbConfig(server_id=LOWER_ID, host="127.0.0.1", port=0, heartbeat_interval=0.5, tick=0.1,
                                  uppers=[{"server_id": UPPER_ID, "host": "127.0.0.1", "port": upper.port,
                                           "password": "upper-secret", "keepalive": 0.2}]), store)
        sim = Simulator(("127.0.0.1", 0), count=1, channels=4, heartbeat=0.2, server_id=LOWER_ID)
        await lower.start()
        sim.server = ("127.0.0.1", lower.port)
        lower_svc, upper_svc = DeviceService(store), DeviceService(upper_store)
        try:
            await sim.start()
            dev = sim.devices[0]
            assert await _wait(lambda: len(lower_svc.channels("gb28181", dev.device_id)) == 4)
            # share two of the four channels and approve the device
            shared = [c["channel_id"] for c in dev.channels[:2]]
            lower_svc.upsert("gb28181", dev.device_id, review="approved", community_code="350404001001")
            with store.session() as s:
                for ch in s.query(Channel).filter(Channel.channel_id.in_(shared)):
                    ch.shared = True
            await lower.cascade.refresh_shared()
            # the lower platform is registered (digest) and online at the upper, kept alive
            assert await _wait(lambda: upper.devices.get(LOWER_ID) is not None
                               and upper.devices[LOWER_ID].status == "online")
            await asyncio.sleep(1.2)  # > heartbeat × count of the upper
            assert upper.devices[LOWER_ID].status == "online"
            result = await upper.query(LOWER_ID, "Catalog")
            ids = {c["channel_id"] for c in result["channels"]}
            assert set(shared) <= ids and not ({c["channel_id"] for c in dev.channels[2:]} & ids)
            group = lower.cascade.group_id
            assert group in ids
            assert all(c["parent_id"] == group for c in result["channels"] if c["channel_id"] in shared)
            await upper.drain()
            names = {c.channel_id: c.name for c in upper_svc.channels("gb28181", LOWER_ID)}
            assert names[shared[0]] == dev.channels[0]["name"] and "社区" in names[shared[0]]
            civil = {c.channel_id: c.civil_code for c in upper_svc.channels("gb28181", LOWER_ID)}
            assert civil[shared[0]] == "350402"
            # an alarm of a shared channel reaches the upper's event stream
            assert await sim.alarm(dev, channel=0, description="周界入侵") == 200
            assert await _wait(lambda: bool(upper_events))
            assert upper_events[0].source == shared[0] and upper_events[0].data["description"] == "周界入侵"
            # an alarm of an unshared channel does not leave the lower platform
            await sim.alarm(dev, channel=3, description="不外送")
            await asyncio.sleep(0.5)
            assert len(upper_events) == 1
            # live view: the upper's INVITE for a shared channel is relayed to the device, its SDP answer back
            sdp = (b"v=0\r\no=35000000002000000001 0 0 IN IP4 10.0.0.9\r\ns=Play\r\nc=IN IP4 10.0.0.9\r\n"
                   b"t=0 0\r\nm=video 40000 RTP/AVP 96\r\na=recvonly\r\ny=0100000001\r\n")
            resp, dialog = await upper.invite(LOWER_ID, shared[0], sdp)
            assert resp.status == 200 and b"m=video 30000" in resp.body and dev.invites == 1
            assert await upper.bye(dialog) == 200
            assert await _wait(lambda: "BYE" in dev.received)
            resp, dialog = await upper.invite(LOWER_ID, dev.channels[3]["channel_id"], sdp)  # not shared
            assert resp.status == 404 and dialog is None and dev.invites == 1
        finally:
            await sim.stop()
            await lower.stop()
            await upper.stop()
            await bus.drain()
            await bus.close()

    asyncio.run(scenario())
    upper_store.dispose()
