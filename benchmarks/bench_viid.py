"""GA/T 1400 ingest benchmark: face records, each with its own 10 KB JPEG crop, posted over HTTP on loopback to
`anfang` under uvicorn (a subprocess), acknowledged only after a durable commit (images fsynced in their segment
file, SQLite synchronous=FULL / PostgreSQL synchronous_commit=on), compared with the same records written straight
into the store (prepare + IngestWriter.write, batches of 50, same fsyncs) in the same run.

    .venv/bin/python benchmarks/bench_viid.py --db sqlite [--records 20000] [--conns 8]
    .venv/bin/python benchmarks/bench_viid.py --db postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from common import OUT, PG_URL, console, fresh_database, save_results

from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from anfang.viid import service
from anfang.viid.images import SegmentImageStore
from anfang.viid.simulator import ape_id, face, make_jpeg

PASSWORD = "bench1400"
MEDIA = "application/VIID+JSON;charset=UTF-8"


def unique_jpeg(base: bytes, n: int) -> bytes:
    """The base JPEG with a COM segment carrying ``n``: a distinct, valid file (distinct SHA-256) per record."""
    text = f"anfang bench {n:012d}".encode()
    return base[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + base[2:]


def records(device: str, count: int, start: int, base: bytes) -> list[dict]:
    t0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    return [face(device, unique_jpeg(base, start + i), at=t0 + timedelta(milliseconds=10 * (start + i)),
                 serial=start + i) for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import os, uvicorn
from anfang.app import create_app
from anfang.config import Settings
s = Settings(data_dir=os.environ['B_DIR'], database_url=os.environ['B_URL'], viid_password='PASSWORD',
             viid_keepalive_timeout=3600, viid_max_body=64*1024*1024)
uvicorn.run(create_app(s), host='127.0.0.1', port=int(os.environ['B_PORT']), log_level='warning',
            loop='uvloop', http='httptools', access_log=False)
""".replace("PASSWORD", PASSWORD)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to state the server's cost per record on a shared box."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def start_server(url: str, data_dir: Path, port: int, script: str = SERVER,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, B_DIR=str(data_dir), B_URL=url, B_PORT=str(port), **(env or {}))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/VIID/System/Time", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def post_all(port: int, bodies: list[tuple[str, bytes]], conns: int) -> tuple[float, int]:
    """Post (device, body) pairs over ``conns`` keep-alive HTTP/1.1 connections; returns (seconds, objects
    acknowledged with StatusCode 0). A minimal client on raw asyncio streams (like wrk): httpx would take a good
    share of the two shared cores away from the server being measured."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    acked = 0

    async def worker() -> None:
        nonlocal acked
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                device, body = queue.get_nowait()
                writer.write(b"POST /VIID/Faces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + MEDIA.encode()
                             + b"\r\nUser-Identify: " + device.encode() + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                payload = await reader.readexactly(length)
                if status == 200:
                    statuses = orjson.loads(payload)["ResponseStatusListObject"]["ResponseStatusObject"]
                    acked += sum(1 for s in statuses if s["StatusCode"] == 0)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return time.perf_counter() - t0, acked


async def register_all(port: int, devices: list[str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        for d in devices:
            r = await c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": d}}),
                             headers={"Content-Type": MEDIA}, auth=httpx.DigestAuth(d, PASSWORD))
            assert r.status_code == 200, r.text


def direct(url: str, data_dir: Path, objs: list[dict], batch: int) -> float:
    """Records/s written straight into the store: the same checks (prepare) and the same writer, no HTTP."""
    store = Store(url)
    images = SegmentImageStore(data_dir / "viid" / "segments")
    writer = service.IngestWriter(store, images)
    raw = [orjson.dumps(o) for o in objs]  # parse from JSON too, as the server does
    t0 = time.perf_counter()
    for i in range(0, len(raw), batch):
        prepared = [service.prepare("face", orjson.loads(b), max_image=4 << 20) for b in raw[i:i + batch]]
        writer.write(prepared, "bench")
    elapsed = time.perf_counter() - t0
    writer.stop()
    images.close()
    store.dispose()
    return len(objs) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--records", type=int, default=20_000, help="records per phase")
    ap.add_argument("--conns", type=int, default=8, help="concurrent HTTP connections")
    ap.add_argument("--single-conns", type=int, default=64, help="connections for one-record requests")
    args = ap.parse_args()
    base = make_jpeg(10_000, seed=1400)
    console.print(f"[bold]GA/T 1400 ingest[/] on {args.db}: {args.records} face records per phase, JPEG "
                  f"{len(base):,} B each (distinct), CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    results: dict = {"db": args.db, "records": args.records, "jpeg_bytes": len(base), "cpus": os.cpu_count()}
    devices = [ape_id(i + 1) for i in range(max(args.conns, args.single_conns))]
    n = args.records

    # direct baseline first (fresh database)
    ddir = OUT / f"viid_direct_{args.db}"
    shutil.rmtree(ddir, ignore_errors=True)
    durl = fresh_database(args.db, 900_001, args.pg_url) if args.db == "postgresql" else \
        f"sqlite:///{ddir / 'anfang.db'}"
    ddir.mkdir(parents=True, exist_ok=True)
    upgrade(durl)
    objs = records(devices[0], n, 0, base)
    rate_direct = direct(durl, ddir, objs, 50)
    console.print(f"  direct into the store (batches of 50):      {rate_direct:8,.0f} records/s")
    results["direct_batch50_per_s"] = round(rate_direct)

    hdir = OUT / f"viid_http_{args.db}"
    shutil.rmtree(hdir, ignore_errors=True)
    hdir.mkdir(parents=True, exist_ok=True)
    hurl = fresh_database(args.db, 900_002, args.pg_url) if args.db == "postgresql" else \
        f"sqlite:///{hdir / 'anfang.db'}"
    upgrade(hurl)
    port = free_port()
    proc = start_server(hurl, hdir, port)
    try:
        asyncio.run(register_all(port, devices))
        # batches of 50
        bodies = []
        for i in range(0, n, 50):
            dev = devices[(i // 50) % args.conns]
            bodies.append((dev, orjson.dumps({"FaceListObject": {"FaceObject": records(dev, 50, n + i, base)}})))
        cpu0 = cpu_seconds(proc.pid)
        secs, acked = asyncio.run(post_all(port, bodies, args.conns))
        cpu50 = (cpu_seconds(proc.pid) - cpu0) / max(acked, 1) * 1e6
        rate50 = acked / secs
        console.print(f"  HTTP, batches of 50, {args.conns} connections:   {rate50:8,.0f} records/s "
                      f"({acked} acknowledged, target ≥ 3,000); server CPU {cpu50:,.0f} µs/record")
        # one record per request
        bodies = []
        for i in range(n):
            dev = devices[i % args.single_conns]
            bodies.append((dev, orjson.dumps({"FaceListObject": {"FaceObject": records(dev, 1, 3 * n + i, base)}})))
        cpu0 = cpu_seconds(proc.pid)
        secs, acked1 = asyncio.run(post_all(port, bodies, args.single_conns))
        cpu1 = (cpu_seconds(proc.pid) - cpu0) / max(acked1, 1) * 1e6
        rate1 = acked1 / secs
        console.print(f"  HTTP, one record a request, {args.single_conns} connections: {rate1:8,.0f} records/s "
                      f"({acked1} acknowledged, target ≥ 1,000); server CPU {cpu1:,.0f} µs/record")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ratio = rate50 / rate_direct
    console.print(f"  ratio HTTP (batches of 50) / direct:        {ratio:8.2f}   (target ≥ 0.5)")
    seg = sum(p.stat().st_size for p in (hdir / "viid" / "segments").glob("*.dat"))
    console.print(f"  segment bytes written over HTTP: {seg:,} ({seg / max(acked + acked1, 1):,.0f} B/record)")
    results.update(http_batch50_per_s=round(rate50), http_single_per_s=round(rate1), ratio=round(ratio, 3),
                   server_cpu_us_per_record_batch50=round(cpu50), server_cpu_us_per_record_single=round(cpu1),
                   load_average=os.getloadavg()[0],
                   conns=args.conns, single_conns=args.single_conns)
    path = save_results(f"viid_{args.db}", results)
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
