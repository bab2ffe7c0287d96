"""APE simulator (``anfang viid simulate``): devices that register with digest, keep alive and post faces (photos
from a directory given with ``--faces``, read in place; else faces drawn by demo/media.py) and motor vehicles with
Fujian 闽G plates (a drawn car front and plate crop).
The builders are also used by the tests and the benchmark."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import random
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import orjson

from anfang.viid import ids
from anfang.viid.schemas import MEDIA_TYPE, statuses_of

PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_serial = count(1)


def make_jpeg(size: int = 10_000, seed: int = 0, width: int = 96, height: int = 96) -> bytes:
    """A real JPEG of about ``size`` bytes (noise, so it does not compress away)."""
    from PIL import Image

    rnd = random.Random(seed)
    side_w, side_h = width, height
    for _ in range(12):
        img = Image.frombytes("RGB", (side_w, side_h), rnd.randbytes(side_w * side_h * 3))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=75)
        data = buf.getvalue()
        if abs(len(data) - size) < size * 0.15:
            return data
        scale = (size / len(data)) ** 0.5
        side_w, side_h = max(8, int(side_w * scale)), max(8, int(side_h * scale))
    return data


def ape_id(n: int, region: str = "35040200") -> str:
    """A 20-digit APE id in Sanming (region 350402 三元区 by default); type code 119 (APE)."""
    return f"{region}{'11'}{'119'}{n:07d}"


def plate(rnd: random.Random) -> str:
    return "闽G" + rnd.choice(PLATE_LETTERS) + "".join(rnd.choice("0123456789") for _ in range(4))


def face(device_id: str, jpeg: bytes, *, at: datetime | None = None, serial: int | None = None,
         gender: str = "1") -> dict[str, Any]:
    at = at or datetime.now(UTC)
    n = serial if serial is not None else next(_serial)
    source = ids.make_source_id(device_id, at, n)
    fid = ids.make_object_id(source, "face", n)
    t = ids.format_time(at)
    return {"FaceID": fid, "InfoKind": 1, "SourceID": source, "DeviceID": device_id, "LeftTopX": 10, "LeftTopY": 10,
            "RightBtmX": 90, "RightBtmY": 90, "LocationMarkTime": t, "FaceAppearTime": t, "FaceDisAppearTime": t,
            "GenderCode": gender, "IsDriver": 0, "IsForeigner": 0,
            "SubImageList": {"SubImageInfoObject": [{
                "ImageID": source, "EventSort": 4, "DeviceID": device_id, "StoragePath": "", "Type": "11",
                "FileFormat": "Jpeg", "ShotTime": t, "Width": 96, "Height": 96,
                "Data": base64.b64encode(jpeg).decode()}]}}


def vehicle(device_id: str, jpeg: bytes, plate_no: str, *, at: datetime | None = None,
            serial: int | None = None, plate_color: str = "5", plate_jpeg: bytes | None = None) -> dict[str, Any]:
    """A MotorVehicleObject with its scene image (type 01) and, when given, the plate crop (type 02)."""
    at = at or datetime.now(UTC)
    n = serial if serial is not None else next(_serial)
    source = ids.make_source_id(device_id, at, n)
    t = ids.format_time(at)
    return {"MotorVehicleID": ids.make_object_id(source, "motor", n), "InfoKind": 1, "SourceID": source,
            "TollgateID": device_id, "DeviceID": device_id, "StorageUrl1": "", "LeftTopX": 0, "LeftTopY": 0,
            "RightBtmX": 96, "RightBtmY": 96, "MarkTime": t, "AppearTime": t, "DisappearTime": t, "PassTime": t,
            "LaneNo": 1, "HasPlate": True, "PlateClass": "02", "PlateColor": plate_color, "PlateNo": plate_no,
            "Speed": 30.0, "Direction": "1", "VehicleClass": "K33", "VehicleColor": "2",
            "SubImageList": {"SubImageInfoObject": [{
                "ImageID": source, "EventSort": 1, "DeviceID": device_id, "StoragePath": "", "Type": "01",
                "FileFormat": "Jpeg", "ShotTime": t, "Data": base64.b64encode(jpeg).decode()}] + ([{
                "ImageID": ids.make_source_id(device_id, at, n + 500_000), "EventSort": 1, "DeviceID": device_id,
                "StoragePath": "", "Type": "02", "FileFormat": "Jpeg", "ShotTime": t,
                "Data": base64.b64encode(plate_jpeg).decode()}] if plate_jpeg else [])}}


def face_list(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"FaceListObject": {"FaceObject": objs}}


def vehicle_list(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"MotorVehicleListObject": {"MotorVehicleObject": objs}}


class ApeClient:
    """One simulated APE speaking GA/T 1400 to ``base`` (http://host:port)."""

    def __init__(self, base: str, device_id: str, password: str, client: httpx.AsyncClient | None = None) -> None:
        self.base, self.device_id, self.password = base.rstrip("/"), device_id, password
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self.headers = {"Content-Type": MEDIA_TYPE, "User-Identify": device_id}

    async def register(self) -> bool:
        resp = await self.client.post(f"{self.base}/VIID/System/Register", headers=self.headers,
                                      content=orjson.dumps({"RegisterObject": {"DeviceID": self.device_id}}),
                                      auth=httpx.DigestAuth(self.device_id, self.password))
        return resp.status_code == 200

    async def keepalive(self) -> bool:
        resp = await self.client.post(f"{self.base}/VIID/System/Keepalive", headers=self.headers,
                                      content=orjson.dumps({"KeepaliveObject": {"DeviceID": self.device_id}}))
        return resp.status_code == 200

    async def post(self, path: str, payload: dict[str, Any]) -> list[Any]:
        resp = await self.client.post(f"{self.base}/VIID/{path}", headers=self.headers,
                                      content=orjson.dumps(payload))
        resp.raise_for_status()
        return statuses_of(resp.json())

    async def aclose(self) -> None:
        await self.client.aclose()


def load_photos(directory: Path, limit: int = 200) -> list[bytes]:
    """JPEG/PNG files under ``directory`` (read where they are; never copied)."""
    out = []
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.is_file():
            out.append(path.read_bytes())
            if len(out) >= limit:
                break
    return out


async def simulate(base: str, *, apes: int = 3, rate: float = 2.0, duration: float = 30.0, password: str,
                   faces_dir: Path | None = None, seed: int = 1400, report: Any = print,
                   device_ids: list[str] | None = None) -> dict[str, int]:
    """Run ``apes`` devices for ``duration`` seconds, each posting about ``rate`` captures a second (faces and
    vehicles alternately); returns counts of what was acknowledged."""
    from anfang.demo import media

    rnd = random.Random(seed)
    photos = load_photos(faces_dir) if faces_dir and faces_dir.exists() else []
    # without a photo directory: drawn faces that look like face captures (and match nobody), not noise
    photos = [p for p in photos if len(p) <= 4 * 1024 * 1024] or [media.synthetic_face(seed + k) for k in range(24)]
    counts = {"faces": 0, "vehicles": 0, "refused": 0}
    async with httpx.AsyncClient(timeout=30.0) as http:
        clients = [ApeClient(base, d, password, http) for d in (device_ids or [ape_id(i + 1) for i in range(apes)])]
        for c in clients:
            if not await c.register():
                raise RuntimeError(f"{c.device_id}: registration refused (password?)")
        report(f"{apes} 台采集设备已注册 / APEs registered: {', '.join(c.device_id for c in clients)}")
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        last_keepalive = loop.time()
        i = 0
        while loop.time() < end:
            for c in clients:
                i += 1
                if i % 2:
                    st = await c.post("Faces", face_list([face(c.device_id, rnd.choice(photos))]))
                    key = "faces"
                else:
                    no = plate(rnd)
                    st = await c.post("MotorVehicles", vehicle_list([vehicle(
                        c.device_id, media.vehicle_image(no, i), no, plate_jpeg=media.plate_image(no))]))
                    key = "vehicles"
                ok = sum(1 for s in st if s.StatusCode == 0)
                counts[key] += ok
                counts["refused"] += len(st) - ok
            if loop.time() - last_keepalive > 30:
                for c in clients:
                    await c.keepalive()
                last_keepalive = loop.time()
            await asyncio.sleep(1.0 / max(rate, 0.01))
        report(f"人脸 faces {counts['faces']}, 车辆 vehicles {counts['vehicles']}, 拒收 refused {counts['refused']}")
    return counts


class DemoApes:
    """A Service (``viid_simulate`` > 0, used by ``anfang demo``): simulated APEs placed in the first communities
    of the registry, posting to this very node over loopback HTTP, so the console has live captures."""

    def __init__(self, node: Any, count: int, *, rate: float = 0.2) -> None:
        self.node, self.count, self.rate = node, count, rate
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="viid-demo-apes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _place(self) -> list[str]:
        from sqlalchemy import select

        from anfang.registry.models import Address
        from anfang.security.models import User

        with self.node.store.session() as s:
            # First the communities that have a police officer's login (so the demo's officer sees captures and
            # their warnings), then the rest in code order.
            policed = select(User.police_area_id).where(User.role == "police")
            first = list(s.scalars(select(Address.community_code).where(Address.police_area_id.in_(policed))
                                   .distinct().order_by(Address.community_code)))
            rest = list(s.scalars(select(Address.community_code).distinct().order_by(Address.community_code)
                                  .limit(self.count + len(first))))
            communities = list(dict.fromkeys(first + rest))[: self.count]
        out = []
        for i in range(self.count):
            community = communities[i % len(communities)] if communities else None
            device_id = ape_id(i + 1, (community or "35040200")[:8])
            self.node.devices.upsert("viid", device_id, name=f"演示抓拍机 {i + 1}", community_code=community,
                                     type_code="APE")
            out.append(device_id)
        return out

    async def _run(self) -> None:
        from starlette.concurrency import run_in_threadpool

        s = self.node.settings
        await asyncio.sleep(2.0)  # the server is listening by then
        device_ids = await run_in_threadpool(self._place)
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        while True:
            with contextlib.suppress(Exception):
                await simulate(f"http://{host}:{s.port}", apes=self.count, rate=self.rate, duration=3600,
                               password=s.viid_password,
                               faces_dir=Path(s.viid_faces_dir) if s.viid_faces_dir else None, report=lambda *_: None,
                               device_ids=device_ids)
            await asyncio.sleep(5)
