"""CPU cost of one audited police search (issue 17, item 5), by layer, measured as CPU time (not wall time: the
machine is shared, and CPU time is what limits one process's throughput).

Two measurements of the same request (`GET /api/persons?id_number=…` / `?name=…` with a bearer token):

1. in-process, through the ASGI application without uvicorn: the handler's thread-pool hops are run inline so
   that cProfile sees the whole request on one thread; prints CPU ms per request and the cumulative CPU of each
   layer (middlewares, session lookup, service query, audit append, response encoding);
2. end to end: `anfang` under uvicorn in a child process, ``--conns`` keep-alive connections sending the search
   back to back; prints the server process's CPU ms per request (/proc user + system time), i.e. the figure that
   bounds requests/s per core.

    .venv/bin/python benchmarks/profile_search.py --db sqlite [--scale 0.05] [--requests 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from pathlib import Path

from bench_read_under_ingest import search_load
from bench_viid import cpu_seconds, free_port, start_server
from common import PG_URL, console

LAYERS = {  # (file fragment, function name) -> layer label; cumulative CPU of the outermost call of each
    "middlewares (all)": ("anfang/security/headers.py", "__call__"),
    "body limit": ("anfang/security/bodylimit.py", "__call__"),
    "request timer (metrics)": ("anfang/metrics.py", "__call__"),
    "session lookup (current_principal)": ("anfang/security/views.py", "current_principal"),
    "service search_persons": ("anfang/registry/service.py", "search_persons"),
    "  audit append (audit.record)": ("anfang/security/audit.py", "record"),
    "  access monitor hook": ("anfang/security/monitoring.py", "on_audit"),
    "FastAPI response serialisation": ("fastapi/routing.py", "serialize_response"),
    "response rendering (JSONResponse.render)": ("starlette/responses.py", "render"),
    "structlog / logging": ("structlog/_log_levels.py", "meth"),
}


def prepare(db: str, scale: float, pg_url: str) -> tuple[str, Path, object, list[str]]:
    from bench_read_under_ingest import prepare as demo_searches

    return demo_searches(db, scale, pg_url, prefix="prof_search_", db_number=9_000_018)


async def _inline(func, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    return func(*args, **kwargs)


def in_process(url: str, data_dir: Path, police: object, queries: list[str], n: int, profile: bool) -> float:
    """CPU ms per request through the ASGI app (no uvicorn, no sockets); optionally a cProfile by layer."""
    import fastapi.dependencies.utils as fdu
    import fastapi.routing as fr
    import httpx

    from anfang.app import create_app
    from anfang.config import Settings

    fr.run_in_threadpool = _inline  # one thread: cProfile sees the whole request
    fdu.run_in_threadpool = _inline
    app = create_app(Settings(data_dir=data_dir, database_url=url))

    async def run() -> float:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                r = await c.post("/api/auth/login", json={"username": police.username, "password": police.password})
                headers = {"Authorization": f"Bearer {r.json()['token']}"}
                for q in queries[:50]:  # warm-up
                    assert (await c.get(q, headers=headers)).status_code == 200
                prof = cProfile.Profile() if profile else None
                t0 = time.process_time()
                if prof:
                    prof.enable()
                for i in range(n):
                    r = await c.get(queries[i % len(queries)], headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(r.text)
                if prof:
                    prof.disable()
                cpu = time.process_time() - t0
                if prof:
                    report(prof, n)
                return cpu

    cpu = asyncio.run(run())
    return 1000 * cpu / n


def report(prof: cProfile.Profile, n: int) -> None:
    st = pstats.Stats(prof)
    rows = []
    for label, (frag, name) in LAYERS.items():
        best = 0.0
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            if func == name and frag in file.replace("\\", "/"):
                best = max(best, ct)
        rows.append((label, 1000 * best / n))
    console.print("CPU ms per request by layer (cumulative, under cProfile — relative, not absolute):")
    for label, ms in rows:
        console.print(f"  {label:44s} {ms:7.2f}")
    st.sort_stats("tottime").print_stats(25)
    if os.environ.get("PROF_CALLERS"):
        st.print_callers(os.environ["PROF_CALLERS"])


def end_to_end(url: str, data_dir: Path, police: object, queries: list[str], conns: int, seconds: float) -> dict:
    import httpx

    port = free_port()
    proc = start_server(url, data_dir, port)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/api/auth/login",
                       json={"username": police.username, "password": police.password})
        token = r.json()["token"]
        asyncio.run(search_load(port, token, queries, 10, 2))  # warm-up
        c0 = cpu_seconds(proc.pid)
        lat = asyncio.run(search_load(port, token, queries, conns, seconds))
        c1 = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
    return {"requests": len(lat), "rps": len(lat) / seconds, "cpu_ms_per_request": 1000 * (c1 - c0) / len(lat)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--profile", action="store_true", help="print the cProfile by layer (slower)")
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-server", action="store_true")
    args = ap.parse_args()
    url, data_dir, police, queries = prepare(args.db, args.scale, args.pg_url)
    if not args.skip_server:
        e2e = end_to_end(url, data_dir, police, queries, args.conns, args.seconds)
    ms = in_process(url, data_dir, police, queries, args.requests, args.profile)
    console.print(f"[{args.db}] in-process (ASGI, no uvicorn): {ms:.2f} CPU ms per audited search"
                  f"{' (under cProfile)' if args.profile else ''}")
    if not args.skip_server:
        console.print(f"[{args.db}] uvicorn, {args.conns} connections: {e2e['cpu_ms_per_request']:.2f} server CPU ms "
                      f"per audited search ({e2e['rps']:.0f} req/s, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
