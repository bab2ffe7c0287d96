"""End-to-end warning latency: MQTT publish acknowledged → warning received by the officer's connected terminal
(Server-Sent Events), while background sensor readings flow through at a set rate.

    .venv/bin/python benchmarks/bench_warnings.py [--rate 1000] [--seconds 30] [--probes 150]

Starts `anfang serve` (SQLite, in-process bus, MQTT consumer on the local Mosquitto) on a demo data set at scale
0.2 with sensor devices registered in one officer's 警务区. A separate process publishes normal electrical readings
(QoS 1) at --rate messages/s; every 200 ms a smoke alarm is published on a fresh probe device (so no dedup folds it)
and the time until that warning arrives on the officer's SSE stream is recorded. Prints p50/p90/p99/max (target
p99 <= 500 ms) and the background rate the server actually accepted (from /api/iot/report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import console, save_results
from rich.table import Table
from sqlalchemy import select

from anfang.demo.generator import generate
from anfang.devices.service import DeviceService
from anfang.registry.models import Address
from anfang.security.models import User
from anfang.store.engine import Store
from anfang.store.migrate import upgrade


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def background(rate: int, seconds: float, devices: list[str], ready: mp.Event, done: mp.Value) -> None:
    import logging

    import aiomqtt

    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt notes every burst of pending publishes

    async def go() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"bench-bg-{os.getpid()}") as c:
            ready.set()
            start = time.perf_counter()
            sent = 0
            while (elapsed := time.perf_counter() - start) < seconds:
                due = int(elapsed * rate) - sent
                if due <= 0:
                    await asyncio.sleep(0.002)
                    continue
                batch = []
                for _ in range(min(due, 200)):
                    dev = devices[sent % len(devices)]
                    payload = {"residual_current_ma": 20 + sent % 50, "cable_temperature_c": 35.5,
                               "voltage_v": 220.0, "current_a": 3.2}
                    batch.append(c.publish(f"anfang/v1/electrical/{dev}", json.dumps(payload), qos=1))
                    sent += 1
                await asyncio.gather(*batch)
            done.value = sent

    asyncio.run(go())


async def measure(base: str, token: str, probes: list[str], interval: float) -> tuple[list[float], int]:
    import aiomqtt

    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    got_all = asyncio.Event()

    async def listen() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=None) as client, \
                client.stream("GET", base + "/api/warnings/stream", headers=headers) as r:
            listening.set()
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.perf_counter()
                msg = json.loads(line[6:])
                src = msg.get("warning", {}).get("source")
                if msg.get("step") == "raised" and src in sent_at:
                    latencies.append((now - sent_at[src]) * 1000)
                    if len(latencies) == len(probes):
                        got_all.set()
                        return

    listening = asyncio.Event()
    task = asyncio.create_task(listen())
    await listening.wait()
    await asyncio.sleep(0.5)
    async with aiomqtt.Client("127.0.0.1", 1883, identifier="bench-probe") as c:
        for dev in probes:
            # Timed from just before the publish: includes the broker's PUBACK, so the figure is conservative
            # (and no warning can arrive before its start time is known).
            sent_at[dev] = time.perf_counter()
            await c.publish(f"anfang/v1/smoke/{dev}", json.dumps({"alarm": True}), qos=1)
            await asyncio.sleep(interval)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(got_all.wait(), timeout=10)
    task.cancel()
    return latencies, len(probes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=1000, help="background messages per second")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--probes", type=int, default=120)
    args = ap.parse_args()
    interval = 0.2
    work = Path(tempfile.mkdtemp(prefix="anfang-bench-ew-"))
    db_url = f"sqlite:///{work / 'anfang.db'}"
    upgrade(db_url)
    store = Store(db_url)
    summary = generate(store, scale=0.2, seed=2021)
    police = next(x for x in summary.logins if str(x.role) == "police")
    with store.session() as s:
        me = s.scalar(select(User).where(User.username == police.username))
        rooms = list(s.scalars(select(Address).where(Address.police_area_id == me.police_area_id,
                                                     Address.level == "room").limit(50)))
    devices = DeviceService(store)
    tag = os.urandom(3).hex()
    probes = [f"smoke-{tag}-{i}" for i in range(args.probes)]
    bg = [f"elec-{tag}-{i}" for i in range(100)]
    for i, dev in enumerate(probes + bg):
        room = rooms[i % len(rooms)]
        devices.upsert("mqtt", dev, name=dev, address_id=room.id, community_code=room.community_code)
    store.dispose()

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(ANFANG_MQTT_HOST="127.0.0.1", ANFANG_NODE_ID=f"bench{tag}")
    log = (work / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "serve", "--data-dir",
                             str(work), "--port", str(port)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(1.0)
        token = httpx.post(base + "/api/auth/login",
                           json={"username": police.username, "password": police.password}).json()["token"]
        city = httpx.post(base + "/api/auth/login",
                          json={"username": "city", "password": police.password}).json()["token"]
        ready, done = mp.Event(), mp.Value("i", 0)
        bg_proc = mp.Process(target=background, args=(args.rate, args.seconds, bg, ready, done))
        bg_proc.start()
        ready.wait(10)
        time.sleep(2.0)  # let the background load settle
        t0 = time.perf_counter()
        latencies, sent = asyncio.run(measure(base, token, probes, interval))
        probe_span = time.perf_counter() - t0
        bg_proc.join()
        time.sleep(1.0)
        counts = httpx.get(base + "/api/iot/report", headers={"Authorization": f"Bearer {city}"}).json()["counts"]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()

    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, max(0, round(q / 100 * len(lat)) - 1))] if lat else float("nan")

    accepted_bg = counts.get("accepted", 0) - len(lat)
    table = Table(title="预警端到端时延 / warning end-to-end latency (MQTT PUBACK → terminal SSE)")
    for col in ("probes", "received", "p50 ms", "p90 ms", "p99 ms", "max ms", "background sent", "bg rate/s",
                "server accepted", "target p99"):
        table.add_column(col, justify="right")
    rate = done.value / args.seconds
    table.add_row(str(sent), str(len(lat)), f"{pct(50):.1f}", f"{pct(90):.1f}", f"{pct(99):.1f}",
                  f"{(lat[-1] if lat else float('nan')):.1f}", f"{done.value:,}", f"{rate:,.0f}",
                  f"{accepted_bg:,}", "≤ 500 ms " + ("[green]met" if lat and len(lat) == sent and pct(99) <= 500
                                                    else "[red]NOT met"))
    console.print(table)
    console.print(f"probes spanned {probe_span:.1f} s of the {args.seconds:.0f} s background run")
    save_results("warnings_e2e", {"probes": sent, "received": len(lat), "p50": pct(50), "p90": pct(90),
                                  "p99": pct(99), "max": lat[-1] if lat else None, "bg_sent": done.value,
                                  "bg_rate": rate, "server_accepted": counts.get("accepted", 0)})


if __name__ == "__main__":
    main()
