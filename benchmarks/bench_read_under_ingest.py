"""Reads under ingest (issue 17, item 5): police searching persons over 100 keep-alive connections against
`anfang` under uvicorn, first alone, then while GA/T 1400 faces are ingested at a fixed rate (another process posts
them to /VIID/Faces). Prints requests/s, p50 and p99 of the searches in both phases of the same run, beside the
limit (p99 ≤ 300 ms under ingest).

    .venv/bin/python benchmarks/bench_read_under_ingest.py --db sqlite [--scale 0.3] [--seconds 20] [--faces 600]
    .venv/bin/python benchmarks/bench_read_under_ingest.py --db postgresql
    .venv/bin/python benchmarks/bench_read_under_ingest.py --db sqlite --read-workers 2

``--read-workers N``: the server runs N reader processes beside the primary (`anfang serve --read-workers`,
docs/architecture.md); the searches go to the read port, the GA/T 1400 ingest (and the login) to the primary.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import orjson
from bench_viid import MEDIA, SERVER, free_port, records, register_all, start_server
from common import PG_URL, console, fresh_database, save_results

from anfang.demo.generator import generate
from anfang.registry.service import RegistryService
from anfang.security.service import principal_of
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from anfang.viid.simulator import ape_id, make_jpeg

# bench_viid's server, with N reader processes on B_READ_PORT (anfang.readers) when B_READERS > 0
READERS_SERVER = SERVER.replace("uvicorn.run(", """
s.read_workers, s.read_port = int(os.environ['B_READERS']), int(os.environ['B_READ_PORT'])
from anfang.readers import Readers
readers = Readers(s, dict(loop='uvloop', http='httptools', access_log=False)).start()
try:
    uvicorn.run(""", 1).rstrip() + """
finally:
    readers.stop()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def search_load(port: int, token: str, queries: list[str], conns: int, seconds: float) -> list[float]:
    """``conns`` keep-alive connections each sending GET requests back to back for ``seconds``; latencies (s).
    Raw asyncio streams (like wrk), so that the client takes little of the two shared cores."""
    latencies: list[float] = []
    end = time.monotonic() + seconds
    rnd = random.Random(7)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < end:
                q = rnd.choice(queries)
                t0 = time.perf_counter()
                writer.write(f"GET {q} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
                             .encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if head[9:12] != b"200":
                    raise RuntimeError(f"search answered {head[9:12].decode()}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return latencies


def ingest_process(port: int, rate: float, seconds: float, ready: mp.Event, stop: mp.Event, out: mp.Queue) -> None:
    """Post faces at ``rate`` per second (batches of 10, 4 connections) until ``stop``; puts the number acked."""
    devices = [ape_id(900 + i) for i in range(4)]
    asyncio.run(register_all(port, devices))
    base = make_jpeg(10_000, seed=5)
    per_batch = 10
    n_batches = int(rate * seconds / per_batch) + 50
    bodies = []
    for b in range(n_batches):
        dev = devices[b % len(devices)]
        objs = records(dev, per_batch, b * per_batch, base)
        bodies.append((dev, orjson.dumps({"FaceListObject": {"FaceObject": objs}})))
    ready.set()

    async def run() -> int:
        acked = 0
        queue: asyncio.Queue = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)
        t0 = time.monotonic()
        sent = 0

        async def worker() -> None:
            nonlocal acked, sent
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while not stop.is_set() and not queue.empty():
                    due = t0 + sent * per_batch / rate
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                    sent += 1
                    device, body = queue.get_nowait()
                    writer.write(b"POST /VIID/Faces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + MEDIA.encode()
                                 + b"\r\nUser-Identify: " + device.encode() + b"\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    payload = await reader.readexactly(length)
                    if head[9:12] == b"200":
                        st = orjson.loads(payload)["ResponseStatusListObject"]["ResponseStatusObject"]
                        acked += sum(1 for s in st if s["StatusCode"] == 0)
            finally:
                writer.close()

        await asyncio.gather(*(worker() for _ in range(4)))
        return acked

    out.put(asyncio.run(run()))


def prepare(db: str, scale: float, pg_url: str, *, prefix: str, db_number: int
            ) -> tuple[str, Path, object, list[str]]:
    """A fresh database with the demo data at ``scale``, its data keys in the environment (one key set for the data
    written here and the server), the police login, and the searches he makes (by ID number and by name)."""
    from sqlalchemy import select

    from anfang.security.models import User

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    if not os.environ.get("ANFANG_DATA_KEYS"):
        from anfang.security import crypto

        os.environ["ANFANG_DATA_KEYS"] = crypto.KeyMaterial.generate().to_json()
        crypto.configure(None)
    url = fresh_database(db, db_number, pg_url) if db == "postgresql" else \
        f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(url)
    store = Store(url)
    summary = generate(store, scale=scale, seed=2021)
    police = next(x for x in summary.logins if str(x.role) == "police")
    with store.session() as s:
        principal = principal_of(s.scalar(select(User).where(User.username == police.username)), "bench")
    found = RegistryService(store).search_persons(principal, size=100).items
    queries = [f"/api/persons?id_number={quote(p['id_number'])}" for p in found if p.get("id_number")]
    queries += [f"/api/persons?name={quote(p['name'])}" for p in found if p.get("name")]
    store.dispose()
    return url, data_dir, police, queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--scale", type=float, default=0.3, help="demo data scale (persons)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--faces", type=float, default=600.0, help="faces/s ingested in the second phase")
    ap.add_argument("--read-workers", type=int, default=0,
                    help="reader processes beside the primary; the searches go to their port")
    args = ap.parse_args()

    url, data_dir, police, queries = prepare(args.db, args.scale, args.pg_url, prefix="bench_riu_",
                                             db_number=9_000_017)
    port = free_port()
    search_port = port
    if args.read_workers > 0:
        search_port = free_port()
        proc = start_server(url, data_dir, port, READERS_SERVER,
                            {"B_READERS": str(args.read_workers), "B_READ_PORT": str(search_port)})
        _wait_healthy(search_port)
    else:
        proc = start_server(url, data_dir, port)
    try:
        import httpx

        r = httpx.post(f"http://127.0.0.1:{port}/api/auth/login",
                       json={"username": police.username, "password": police.password})
        token = r.json()["token"]
        asyncio.run(search_load(search_port, token, queries, 10, 2))  # warm-up
        alone = asyncio.run(search_load(search_port, token, queries, args.conns, args.seconds))
        ready, stop, out = mp.Event(), mp.Event(), mp.Queue()
        child = mp.Process(target=ingest_process, args=(port, args.faces, args.seconds + 5, ready, stop, out))
        child.start()
        ready.wait(300)
        time.sleep(2)  # ingest up to speed
        t0 = time.monotonic()
        loaded = asyncio.run(search_load(search_port, token, queries, args.conns, args.seconds))
        stop.set()
        acked = out.get(timeout=120)
        child.join(30)
        ingest_s = time.monotonic() - t0 + 2
    finally:
        proc.terminate()
        proc.wait(20)
    res = {}
    for label, lat in (("alone", alone), ("under_ingest", loaded)):
        res[label] = {"requests": len(lat), "rps": round(len(lat) / args.seconds, 1),
                      "p50_ms": round(1000 * statistics.median(lat), 1),
                      "p99_ms": round(1000 * percentile(lat, 0.99), 1)}
    res["faces_per_s"] = round(acked / ingest_s, 1)
    res["conditions"] = {"db": args.db, "conns": args.conns, "seconds": args.seconds, "scale": args.scale,
                         "read_workers": args.read_workers, "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    where = f", on {args.read_workers} read workers" if args.read_workers else ""
    console.print(f"\\[{args.db}] police search, {args.conns} connections{where}, {args.seconds:.0f} s each phase "
                  f"(load average {os.getloadavg()[0]:.1f})")
    console.print(f"  alone:        {res['alone']['rps']:8.1f} req/s   p50 {res['alone']['p50_ms']:7.1f} ms   "
                  f"p99 {res['alone']['p99_ms']:7.1f} ms")
    console.print(f"  under ingest: {res['under_ingest']['rps']:8.1f} req/s   p50 {res['under_ingest']['p50_ms']:7.1f}"
                  f" ms   p99 {res['under_ingest']['p99_ms']:7.1f} ms (limit 300 ms)   while {res['faces_per_s']:.0f}"
                  f" faces/s ingested (target {args.faces:.0f})")
    suffix = f"_readers{args.read_workers}" if args.read_workers else ""
    save_results(f"read_under_ingest_{args.db}{suffix}", res)


def _wait_healthy(port: int, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the readers on port {port} did not start")


if __name__ == "__main__":
    main()
