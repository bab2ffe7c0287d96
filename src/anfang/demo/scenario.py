"""The demo's story (``anfang demo``): within its first minutes the demo officer's terminal receives each kind of
warning the programme is about, raised the way a real site raises them —

1. 人像布控: a face watchlist (one person, the public-domain photo of demo/media.py) and a GA/T 1400 face capture
   of her, a different picture, posted by a camera in the officer's 警务区 → ``face.watchlist``;
2. 车辆布控: a plate watchlist (闽G12345) and a vehicle capture with that plate → ``plate.watchlist``;
3. 周界入侵: a perimeter alarm on the IoT API (the MQTT payload over HTTP) → ``alarm.perimeter_intrusion``;
4. 烟感报警: a smoke detector in alarm → ``smoke.alarm``;
5. 门禁被强行打开: a door controller reporting ``forced`` → ``access.forced``.

The devices are registered at a building of the officer's 警务区 (the demo officer is the first police login).
Each step goes over loopback HTTP to this very server (GA/T 1400 digest registration, ``/api/iot/...``), so it
takes the same path as a real device. The story repeats every ``repeat_every`` seconds (new hits on the open
warnings, or new warnings once they are closed). Nothing here reads files outside the installed packages.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

log = structlog.get_logger(__name__)

DEMO_PLATE = "闽G12345"
FACE_WATCHLIST = "演示布控人员"
PLATE_WATCHLIST = "演示布控车辆"
STEPS = ("face", "plate", "perimeter", "smoke", "door")


@dataclass
class DemoSite:
    """Where the story happens: the officer's 警务区, one building in it, and the devices placed there."""

    police_area_id: int
    community_code: str
    address_id: int
    address: str
    ape: str
    perimeter: str
    smoke: str
    door: str


def seed_watchlists(store: Any, data_dir: Any) -> list[str]:
    """The demo's face and plate watchlists (on its fresh database); returns lines for the demo's banner."""
    from anfang.demo import media
    from anfang.faces.service import FaceWatchlistService
    from anfang.security.scope import Principal
    from anfang.warnings.service import WarningService

    lines: list[str] = []
    warnings = WarningService(store)
    system = Principal.system("demo")
    plates = warnings.create_plate_watchlist(system, PLATE_WATCHLIST)
    warnings.add_plates(system, plates, [(DEMO_PLATE, "演示")])
    lines.append(f"车辆布控 / plate watchlist: {DEMO_PLATE}")
    try:
        photo = media.watchlist_photo()
    except media.DemoMediaMissing as exc:
        lines.append(f"人像布控 / face watchlist: — ({exc})")
        return lines
    faces = FaceWatchlistService(store, data_dir)
    wl = faces.create_watchlist(FACE_WATCHLIST)
    faces.enrol(wl.id, media.WATCHLIST_LABEL, photo)
    faces.flush()
    lines.append(f"人像布控 / face watchlist: {media.WATCHLIST_LABEL}（{media.PHOTO_LICENCE}）")
    return lines


def place(store: Any, devices: Any) -> DemoSite | None:
    """Register the story's devices at a building of the first police officer's 警务区 (None: no officer)."""
    from sqlalchemy import select

    from anfang.registry.models import Address
    from anfang.security.models import User
    from anfang.viid.simulator import ape_id

    with store.session() as s:
        area = s.scalar(select(User.police_area_id).where(User.role == "police", User.police_area_id.is_not(None))
                        .order_by(User.id).limit(1))
        if area is None:
            return None
        addr = s.execute(select(Address.id, Address.community_code, Address.full_name, Address.level)
                         .where(Address.police_area_id == area, Address.community_code.is_not(None))
                         .order_by((Address.level != "building"), Address.id).limit(1)).first()
    if addr is None:
        return None
    community = str(addr.community_code)
    site = DemoSite(int(area), community, int(addr.id), str(addr.full_name or ""),
                    ape=ape_id(9001, community[:8]), perimeter=f"demo-perimeter-{community}",
                    smoke=f"demo-smoke-{community}", door=f"demo-door-{community}")
    name = site.address or community
    devices.upsert("viid", site.ape, name=f"演示抓拍机（{name}）", community_code=community, type_code="APE",
                   address_id=site.address_id)
    for device_id, label in ((site.perimeter, "周界"), (site.smoke, "烟感"), (site.door, "单元门门禁")):
        devices.upsert("mqtt", device_id, name=f"{name}{label}", community_code=community, address_id=site.address_id)
    return site


class DemoScenario:
    """A Service: plays the story ``first_delay`` s after start, one step every ``pace`` s, again every
    ``repeat_every`` s. ``base_url`` defaults to this server over loopback."""

    def __init__(self, app: Any, *, pace: float = 20.0, first_delay: float = 10.0, repeat_every: float = 900.0,
                 base_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.app, self.pace, self.first_delay, self.repeat_every = app, pace, first_delay, repeat_every
        s = app.state.settings
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        self.base_url = base_url or f"http://{host}:{s.port}"
        self.transport = transport
        self.played: list[str] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-scenario")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)  # the server is listening by then
        state = self.app.state
        site = await asyncio.to_thread(place, state.store, state.devices)
        if site is None:
            log.warning("demo_scenario_no_officer")
            return
        for device_id in (site.perimeter, site.smoke, site.door):
            state.iot.forget(device_id)  # registered just now: no stale "unknown device" in the ingest's cache
        round_no = 0
        while True:
            for step in STEPS:
                try:
                    await getattr(self, f"_{step}")(site, round_no)
                    self.played.append(step)
                except Exception as exc:  # noqa: BLE001 - a demo step that fails must not stop the others
                    log.warning("demo_scenario_step_failed", step=step, error=str(exc)[:200])
                await asyncio.sleep(self.pace)
            round_no += 1
            await asyncio.sleep(self.repeat_every)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30.0, transport=self.transport)

    async def _viid(self, site: DemoSite, path: str, payload: dict[str, Any]) -> None:
        from anfang.viid.simulator import ApeClient

        s = self.app.state.settings
        async with self._client() as http:
            ape = ApeClient(self.base_url, site.ape, s.viid_password, http)
            if not await ape.register():
                raise RuntimeError("APE registration refused")
            statuses = await ape.post(path, payload)
            if not statuses or any(st.StatusCode != 0 for st in statuses):
                raise RuntimeError(f"capture refused: {statuses}")

    async def _face(self, site: DemoSite, round_no: int) -> None:
        from anfang.demo import media
        from anfang.viid.simulator import face, face_list

        await self._viid(site, "Faces", face_list([face(site.ape, media.watchlisted_capture(round_no), gender="2")]))

    async def _plate(self, site: DemoSite, round_no: int) -> None:
        from anfang.demo import media
        from anfang.viid.simulator import vehicle, vehicle_list

        await self._viid(site, "MotorVehicles", vehicle_list([vehicle(
            site.ape, media.vehicle_image(DEMO_PLATE, round_no), DEMO_PLATE,
            plate_jpeg=media.plate_image(DEMO_PLATE))]))

    async def _iot(self, kind: str, device_id: str, payload: dict[str, Any]) -> None:
        async with self._client() as http:
            r = await http.post(f"/api/iot/{kind}/{device_id}", json=payload)
            if r.status_code != 202:
                raise RuntimeError(f"{kind}: HTTP {r.status_code} {r.text[:200]}")

    async def _perimeter(self, site: DemoSite, round_no: int) -> None:
        await self._iot("perimeter", site.perimeter, {"zone": "北侧围墙", "alarm": True, "type": "intrusion"})

    async def _smoke(self, site: DemoSite, round_no: int) -> None:
        await self._iot("smoke", site.smoke, {"alarm": True, "battery_percent": 86})

    async def _door(self, site: DemoSite, round_no: int) -> None:
        await self._iot("door", site.door, {"event": "forced", "method": "exit_button"})


__all__ = ["DEMO_PLATE", "STEPS", "DemoScenario", "DemoSite", "place", "seed_watchlists"]
