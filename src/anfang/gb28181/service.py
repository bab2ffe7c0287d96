"""Wiring into the app: console/API routes always; the SIP server (and demo devices) when ``sip_enabled``."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import structlog
from fastapi import FastAPI

from anfang.gb28181.server import GbConfig, GbServer

log = structlog.get_logger(__name__)
DEMO_PERIMETER = "perimeter-demo-01"  # the demo's perimeter sensor, at the first simulated camera's address


def install(app: FastAPI, settings: Any) -> None:
    from anfang.gb28181.views import mount

    mount(app)
    app.state.gb28181 = None
    if not settings.sip_enabled:
        return
    server = GbServer(GbConfig.from_settings(settings), app.state.store, app.state.bus)
    app.state.gb28181 = server
    app.state.services.append(server)
    if settings.sip_simulate > 0:
        app.state.services.append(DemoDevices(server, settings.sip_simulate, settings.sip_password))


class DemoDevices:
    """A few simulated devices for the demo, placed in the demo's communities; every ``cycle`` seconds one is
    powered off or back on, so the console shows live online/offline transitions — all but the first, beside which
    the demo's perimeter alarm sits (its linked camera must play when the README's alarm is triggered).

    The demo data also holds the cameras of the construction demo (recorded online, with a status history but no
    live peer): they are kept alive by one more simulator that registers them and sends their keepalives, so the
    server does not time every one of them out and flood the officers' terminals with 设备离线 warnings."""

    def __init__(self, server: GbServer, count: int, password: str, cycle: float = 30.0) -> None:
        self.server, self.count, self.password, self.cycle = server, count, password, cycle
        self.sims: list[Any] = []
        self.keeper: Any = None
        self._task: asyncio.Task | None = None

    def _recorded_online(self) -> list[str]:
        from sqlalchemy import select

        from anfang.devices.models import Device

        with self.server.store.session() as s:
            return list(s.scalars(select(Device.device_id).where(Device.protocol == "gb28181",
                                                                 Device.status == "online")
                                  .order_by(Device.device_id)))

    def _place(self) -> None:
        """Place the simulated devices where the demo's users look: at addresses in the 警务区 of the demo's police
        officers first (so the officer's wall and alarm-linked video show them), then the other communities."""
        from sqlalchemy import select

        from anfang.devices.service import DeviceService
        from anfang.registry.models import Address, Region
        from anfang.security.models import User

        devices = [d for sim in self.sims for d in sim.devices]
        with self.server.store.session() as s:
            officers = s.scalars(select(User.police_area_id).where(User.role == "police",
                                                                   User.police_area_id.is_not(None))
                                 .order_by(User.id))
            areas = list(dict.fromkeys(officers))  # each 警务区 once, the first officer's first
            spots: list[tuple[str, int | None, str]] = []  # community code, address id, community name
            for area in areas:
                rows = s.execute(select(Address.community_code, Address.id, Region.name)
                                 .join(Region, Region.code == Address.community_code)
                                 .where(Address.police_area_id == area, Address.level == "building")
                                 .order_by(Address.id).limit(len(devices))).all()
                spots += [(c, i, n) for c, i, n in rows]
            if len(spots) < len(devices):
                rows = s.execute(select(Region.code, Region.name).where(Region.level == "community")
                                 .order_by(Region.code).limit(len(devices))).all()
                spots += [(c, None, n) for c, n in rows]
        svc = DeviceService(self.server.store)
        if spots and spots[0][1] is not None:  # a perimeter alarm beside the first camera (README: trigger it)
            svc.upsert("mqtt", DEMO_PERIMETER, name="周界报警（演示）", community_code=spots[0][0],
                       address_id=spots[0][1], place="perimeter", review="approved")
        for i, sim_dev in enumerate(devices):
            code, address_id, name = spots[i % len(spots)] if spots else (None, None, "")
            svc.upsert("gb28181", sim_dev.device_id, name=f"{name}监控NVR{i + 1}" if name else sim_dev.name,
                       community_code=code, address_id=address_id, password=self.password, type_code="118",
                       review="approved")
            self.server.refresh(sim_dev.device_id)
            if name:  # the channels carry the community they are in, then the place
                from anfang.gb28181.simulator import PLACES

                for ch in sim_dev.channels:
                    place = next((p for p in PLACES if ch["name"].endswith(p)), "")
                    ch["name"], ch["address_text"] = f"{name}{place}", name

    async def start(self) -> None:
        from anfang.gb28181.simulator import Simulator

        cfg = self.server.config
        target = ("127.0.0.1", self.server.port)
        hb = max(1.0, cfg.heartbeat_interval / 2)
        udp = max(1, self.count - 1)
        # live pictures made on the fly: the time is burnt in and PTZ turns the camera (the NVRs also play back
        # any past time: their recordings are made on request)
        self.sims = [Simulator(target, count=udp, channels=4, heartbeat=hb, password=self.password,
                               server_id=cfg.server_id, first_serial=901, live_timecode=True)]
        if self.count > 1:
            self.sims.append(Simulator(target, count=1, channels=3, heartbeat=hb, transport="TCP", live_timecode=True,
                                       password=self.password, server_id=cfg.server_id, first_serial=901 + udp))
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._place)
        for sim in self.sims:
            await sim.start()
        await self._keep_recorded_devices_alive(target, cfg)
        self._task = asyncio.get_running_loop().create_task(self._cycle())

    async def _keep_recorded_devices_alive(self, target: tuple[str, int], cfg: Any) -> None:
        from anfang.gb28181.simulator import SimDevice, Simulator

        own = {d.device_id for sim in self.sims for d in sim.devices}
        ids = [i for i in await asyncio.to_thread(self._recorded_online) if i not in own]
        if not ids:
            return
        keeper = Simulator(target, count=0, heartbeat=max(1.0, cfg.heartbeat_interval * 0.8),
                           password=self.password, server_id=cfg.server_id, first_serial=5000)
        for device_id in ids:
            dev = SimDevice(device_id, self.password, [], name=device_id)
            keeper.devices.append(dev)
            keeper.by_id[device_id] = dev
        self.keeper = keeper
        await keeper.start(concurrency=50)
        log.info("demo_devices_kept_alive", devices=len(ids))

    async def _cycle(self) -> None:
        rng = random.Random(2021)
        # the first camera stays online: the demo's perimeter alarm is beside it and the README tells a new user
        # to trigger that alarm and watch its linked camera live (never "设备离线")
        devices = [(sim, d) for sim in self.sims for d in sim.devices][1:]
        while True:
            await asyncio.sleep(self.cycle)
            idle = [(sim, d) for sim, d in devices if not d.streams]  # never cut a stream someone watches
            if not idle:
                continue
            sim, dev = rng.choice(idle)
            if dev.running:
                sim.power_off(dev)
            else:
                with contextlib.suppress(TimeoutError, OSError):
                    await sim.power_on(dev)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for sim in [*self.sims, self.keeper]:
            if sim is not None:
                await sim.stop()
