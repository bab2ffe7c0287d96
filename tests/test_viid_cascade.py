"""Done means: a device registers with digest at a lower anfang, uploads faces and vehicles, and a second anfang
instance acting as the upper 视图库 receives every one of them through its subscription, although it is down for
a while in the middle of the test. Both instances are real servers (subprocesses) on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from anfang.viid.cascade import subscribe_lower
from anfang.viid.simulator import ApeClient, ape_id, face, face_list, make_jpeg, vehicle, vehicle_list

UPPER_ID, LOWER_ID = "35040000005030000001", "35040200005030000002"
UPPER_PW, APE_PW = "upper-secret", "ape-secret"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    full = dict(os.environ, ANFANG_DATA_DIR=str(data_dir), ANFANG_DATABASE_URL=f"sqlite:///{data_dir}/anfang.db",
                ANFANG_VIID_KEEPALIVE_TIMEOUT="60", **env)
    full.pop("ANFANG_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "anfang.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode(errors="replace")[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/VIID/System/Time", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _ids_at(base: str, who: str, path: str, item: str, key: str) -> set[str]:
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{base}/VIID/{path}", params={"PageRecordNum": 1000}, headers={"User-Identify": who})
        if r.status_code != 200:
            return set()
        return {o[key] for o in r.json()[f"{item[:-6]}ListObject"][item]}


async def _wait_for(base: str, who: str, faces: set[str], cars: set[str], timeout: float) -> tuple[set, set]:
    deadline = time.monotonic() + timeout
    got_f: set[str] = set()
    got_c: set[str] = set()
    while time.monotonic() < deadline:
        got_f = await _ids_at(base, who, "Faces", "FaceObject", "FaceID")
        got_c = await _ids_at(base, who, "MotorVehicles", "MotorVehicleObject", "MotorVehicleID")
        if faces <= got_f and cars <= got_c:
            break
        await asyncio.sleep(0.5)
    return got_f, got_c


def test_upper_receives_everything_despite_downtime(tmp_path: Path) -> None:
    up_port, low_port = _port(), _port()
    up_dir, low_dir = tmp_path / "upper", tmp_path / "lower"
    upper_env = {"ANFANG_VIID_SERVER_ID": UPPER_ID, "ANFANG_VIID_PASSWORD": UPPER_PW, "ANFANG_NODE_ID": "350400"}
    upper = _serve(up_dir, up_port, **upper_env)
    lower = _serve(low_dir, low_port, ANFANG_VIID_SERVER_ID=LOWER_ID, ANFANG_VIID_PASSWORD=APE_PW,
                   ANFANG_NODE_ID="350402", ANFANG_VIID_UPPER_URL=f"http://127.0.0.1:{up_port}",
                   ANFANG_VIID_UPPER_ID=UPPER_ID, ANFANG_VIID_UPPER_PASSWORD=UPPER_PW)
    up, low = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{low_port}"
    jpeg = make_jpeg(10_000, seed=7)
    try:
        async def scenario() -> None:
            nonlocal upper
            # the lower registers with the upper (digest) on its own; wait for that
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient() as c:
                while time.monotonic() < deadline:
                    r = await c.get(f"{up}/VIID/APEs", headers={"User-Identify": LOWER_ID})
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.3)
                assert r.status_code == 200, "the lower 视图库 never registered with the upper"
            # the upper subscribes to the lower's faces (12) and vehicles (13)
            statuses = await subscribe_lower(low, UPPER_ID, f"{up}/VIID/SubscribeNotifications",
                                             "350400000050300000010001", detail="12,13")
            assert [s.StatusCode for s in statuses] == [0]
            ape = ApeClient(low, ape_id(1), APE_PW)
            assert await ape.register()
            faces: set[str] = set()
            cars: set[str] = set()

            async def upload(n: int, start: int) -> None:
                fs = [face(ape.device_id, jpeg, serial=start + i) for i in range(n)]
                vs = [vehicle(ape.device_id, jpeg, f"闽G{start + i:05d}", serial=start + i) for i in range(n)]
                assert [s.StatusCode for s in await ape.post("Faces", face_list(fs))] == [0] * n
                assert [s.StatusCode for s in await ape.post("MotorVehicles", vehicle_list(vs))] == [0] * n
                faces.update(f["FaceID"] for f in fs)
                cars.update(v["MotorVehicleID"] for v in vs)

            await upload(10, 1)
            got_f, got_c = await _wait_for(up, LOWER_ID, faces, cars, 30)
            assert faces <= got_f and cars <= got_c
            # the upper goes down; the device keeps uploading to the lower, which acknowledges
            _stop(upper)
            for k in range(3):
                await upload(10, 100 + 20 * k)
                await asyncio.sleep(1)
            upper = _serve(up_dir, up_port, **upper_env)
            got_f, got_c = await _wait_for(up, LOWER_ID, faces, cars, 90)
            assert got_f == faces, f"missing faces: {len(faces - got_f)}"
            assert got_c == cars, f"missing vehicles: {len(cars - got_c)}"
            # images came along: the upper serves a face's photo
            async with httpx.AsyncClient() as c:
                one = sorted(faces)[0]
                body = (await c.get(f"{up}/VIID/Faces/{one}", headers={"User-Identify": LOWER_ID})).json()
                path = body["FaceObject"]["SubImageList"]["SubImageInfoObject"][0]["StoragePath"]
                img = await c.get(f"{up}{path}", headers={"User-Identify": LOWER_ID})
                assert img.status_code == 200 and img.content == jpeg
            await ape.aclose()

        asyncio.run(scenario())
    finally:
        _stop(lower)
        _stop(upper)
