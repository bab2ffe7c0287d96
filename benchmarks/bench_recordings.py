"""Recordings figures of issue 16: playback start, 20 concurrent playbacks at 2x (beside the live cost per stream),
download of one hour at the simulator's 4x speed with its watermark re-encode.

Set-up (``bench_video``'s helpers): ``anfang``'s app (SIP server, embedded media node, playback manager, SQLite)
under uvicorn in its own process; the GB/T 28181 simulator (``--devices`` x 4 channels, split over ``--sim-procs``
processes) which makes recordings on the fly (the timecode test pattern, H.264, ``--width`` x ``--height``; the
simulator caps recordings at 640x360); a city administrator logged in through ``/api/auth/login``.

1. ``start``: ``POST /api/video/playback`` -> WebSocket -> first ``moof``, ``--starts`` times, each a new playback
   session (its own INVITE ``s=Playback``) of another channel / hour.
2. ``concurrent``: ``--playbacks`` playbacks of distinct channels, each switched to 2x (``POST .../control``
   ``{action: speed, scale: 2}``); over ``--seconds``: max gap between frames per playback (stall > 1 s), frames/s
   delivered vs expected (50/s each), app CPU per playback (``/proc``) and the simulator's CPU. Then ``live``:
   ``bench_video.bench_streams`` (bare media node, RTP/PS senders, same resolution, 25 fps) at the same count, for
   the live CPU per stream beside it.
3. ``download``: ``POST /api/video/download`` of ``--download-minutes`` (60) at speed 4, polled until done: time,
   MB/s and app CPU of the ``downloading`` and of the ``watermarking`` phase.

Run from the repository root: ``.venv/bin/python benchmarks/bench_recordings.py [--only start,concurrent,live,download]
[--download-minutes 60] [--width 320 --height 180] [--profile-server out/rec.prof]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bench_video as bv
from bench_video import Reader, load, mark, pct, proc_cpu, wait_for
from common import console, save_results
from rich.table import Table

bv.HERE = Path(__file__).resolve()  # bench_video's start_server re-runs this script in --serve-* mode
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
PASSWORD = "bench-pass-1"


# ----------------------------------------------------------------------------------------------------- set-up
class Rig:
    """The app process, the simulator processes and a logged-in HTTP client."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.proc: Any = None
        self.sims: list[tuple[Any, Any]] = []
        self.http: Any = None
        self.base = ""
        self.channels: list[str] = []

    async def __aenter__(self) -> Rig:
        import httpx

        from anfang.devices.service import DeviceService
        from anfang.gb28181.simulator import Simulator
        from anfang.security.service import create_user
        from anfang.store.engine import Store
        from anfang.store.migrate import upgrade

        args = self.args
        db_url = f"sqlite:///{self.work / 'anfang.db'}"
        upgrade(db_url)
        store = Store(db_url)
        with store.session() as s:
            create_user(s, username="benchcity", password=PASSWORD, role="city_admin")
        per = -(-args.devices // args.sim_procs)
        kws = []
        for k in range(args.sim_procs):
            kw = {**bv.sim_kwargs(args), "count": min(per, args.devices - k * per), "first_serial": 1 + k * per,
                  "media_ports": (31000 + 500 * k, 31499 + 500 * k)}
            kws.append(kw)
            for d in Simulator(("127.0.0.1", 1), **kw).devices:  # the ids / passwords the simulator will use
                DeviceService(store).upsert("gb28181", d.device_id, name=d.name, community_code="350404001001",
                                            password=d.password, type_code="118", review="approved")
        store.dispose()
        self.proc, info = bv.start_server(["--serve-app", str(self.work), db_url, str(args.linger)], self.work)
        self.base = f"127.0.0.1:{info['port']}"
        ctx = mp.get_context("spawn")
        for kw in kws:
            conn, child = ctx.Pipe()
            p = ctx.Process(target=bv.sim_main, args=(child, info["sip_port"], kw), daemon=True)
            p.start()
            self.sims.append((p, conn))
        for _p, conn in self.sims:
            if not await asyncio.to_thread(conn.poll, 180) or conn.recv() != "ready":
                raise RuntimeError("simulator did not start")
        self.http = httpx.AsyncClient(base_url=f"http://{self.base}", timeout=60)
        token = (await self.http.post("/api/auth/login", json={"username": "benchcity", "password": PASSWORD})
                 ).json()["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        want = 4 * args.devices
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            tree = (await self.http.get("/api/video/tree")).json()
            self.channels = sorted(_channel_ids(tree))
            if len(self.channels) >= want:
                break
            await asyncio.sleep(1)
        console.print(f"  {args.devices} devices registered, {len(self.channels)} channels, {load()}")
        return self

    def sim_stats(self) -> dict:
        out = {"invites": 0, "streams": 0, "bytes_sent": 0, "frames_sent": 0, "cpu": 0.0}
        for _, conn in self.sims:
            conn.send("stats")
            for k, v in conn.recv().items():
                out[k] += v
        return out

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
        for p, conn in self.sims:
            with contextlib.suppress(Exception):
                conn.send("quit")
                conn.poll(10)
            p.join(10)
            if p.is_alive():
                p.terminate()
        if self.proc is not None:
            bv.stop_server(self.proc)


def _channel_ids(tree: Any) -> list[str]:
    """Channel ids (20 digits, type 131/132) anywhere in the channel tree answer."""
    found: list[str] = []
    if isinstance(tree, dict):
        cid = tree.get("channel_id")
        if isinstance(cid, str) and len(cid) == 20 and cid[10:13] in ("131", "132"):
            found.append(cid)
        for v in tree.values():
            found += _channel_ids(v)
    elif isinstance(tree, list):
        for v in tree:
            found += _channel_ids(v)
    return list(dict.fromkeys(found))


async def open_playback(rig: Rig, channel: str, start: datetime, minutes: float = 30) -> tuple[float, Reader, dict]:
    """POST /api/video/playback, connect the WebSocket; seconds to the first moof, the reader, the session."""
    t0 = time.perf_counter()
    r = await rig.http.post("/api/video/playback", json={
        "channel_id": channel, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()})
    r.raise_for_status()
    info = r.json()
    reader = Reader(f"ws://{rig.base}{info['ws_url']}&token={info['token']}", False)
    reader.opened = t0
    reader.start()
    await wait_for(lambda: reader.first is not None or reader.error, 20)
    if reader.first is None:
        raise RuntimeError(f"no picture of the playback of {channel}: {reader.error}")
    return reader.first - t0, reader, info


# ------------------------------------------------------------------------------------------ 1. playback start
async def bench_start(args: argparse.Namespace, rig: Rig) -> dict:
    times, open_before = [], []
    for i in range(args.starts):
        ch = rig.channels[i % len(rig.channels)]
        await wait_for(lambda: rig.sim_stats()["streams"] == 0, args.cold_wait)
        open_before.append(rig.sim_stats()["streams"])
        t, reader, _ = await open_playback(rig, ch, YESTERDAY + timedelta(minutes=17 * i))
        times.append(t)
        await reader.close()
    out = {"n": len(times), "p50": pct(times, 50), "p90": pct(times, 90), "max": max(times),
           "device_streams_open_before": max(open_before), "load": load()}
    console.print(f"  start: {json.dumps(out)}")
    return out


# ------------------------------------------------------------------------------- 2. concurrent playbacks at 2x
async def bench_concurrent(args: argparse.Namespace, rig: Rig) -> dict:
    await wait_for(lambda: rig.sim_stats()["streams"] == 0, 20)
    n = min(args.playbacks, len(rig.channels))
    readers: list[Reader] = []
    try:
        for i in range(n):
            _, reader, info = await open_playback(rig, rig.channels[i], YESTERDAY + timedelta(hours=i % 20))
            r = await rig.http.post(f"/api/video/playback/{info['key']}/control", json={"action": "speed", "scale": 2})
            r.raise_for_status()
            readers.append(reader)
        await asyncio.sleep(args.settle)
        c0, s0, d0, t0 = proc_cpu(rig.proc.pid), rig.sim_stats(), [r.frames for r in readers], time.perf_counter()
        for r in readers:
            r.window()
        await asyncio.sleep(args.seconds)
        for r in readers:
            r.end_window()
        wall = time.perf_counter() - t0
        c1, s1 = proc_cpu(rig.proc.pid), rig.sim_stats()
        delivered = [r.frames - d for r, d in zip(readers, d0, strict=True)]
        cpu = (c1 - c0) / wall
        out = {"playbacks": n, "playing": sum(1 for r in readers if r.frames and not r.error),
               "max_gap_s": round(max(r.max_gap for r in readers), 3),
               "stalled": sum(1 for r in readers if r.stalls or r.error),
               "expected_fps": 2 * args.fps * n, "sent_fps": round((s1["frames_sent"] - s0["frames_sent"]) / wall, 1),
               "delivered_fps": round(sum(delivered) / wall, 1),
               "mbit_s_per_playback": round(8 * (s1["bytes_sent"] - s0["bytes_sent"]) / wall / n / 1e6, 3),
               "min_fps_one_playback": round(min(delivered) / wall, 1),
               "server_cpu_percent": round(100 * cpu, 1),
               "cpu_ms_per_playback_s": round(1000 * cpu / n, 2),
               "cpu_ms_per_frame": round(1000 * (c1 - c0) / max(sum(delivered), 1), 3),
               "simulator_cpu_percent": round(100 * (s1["cpu"] - s0["cpu"]) / wall, 1), "load": load(),
               "errors": sorted({r.error for r in readers if r.error})[:3]}
        console.print(f"  concurrent: {json.dumps(out, ensure_ascii=False)}")
        return out
    finally:
        for r in readers:
            await r.close()


async def bench_live(args: argparse.Namespace, work: Path) -> dict:
    """bench_video's concurrent live streams, one step at the playback count, same resolution."""
    from anfang.media.testsrc import clip

    frames = clip("h264", args.width, args.height, args.fps, args.live_bitrate, args.fps, 2)
    live = argparse.Namespace(levels=[args.playbacks], seconds=args.seconds, settle=args.settle, width=args.width,
                              height=args.height, fps=args.fps, bitrate=args.live_bitrate, ws_deflate=False,
                              stop_on_stall=False)
    row = (await bv.bench_streams(live, work, frames))["rows"][0]
    delivered_per_stream = row["delivered_fps"] / args.playbacks
    row["cpu_ms_per_frame"] = round(row["cpu_ms_per_stream_s"] / max(delivered_per_stream, 0.1), 3)
    return row


# ----------------------------------------------------------------------------------------------- 3. download
async def bench_download(args: argparse.Namespace, rig: Rig) -> dict:
    await wait_for(lambda: rig.sim_stats()["streams"] == 0, 20)
    body = {"channel_id": rig.channels[0], "start": YESTERDAY.isoformat(),
            "end": (YESTERDAY + timedelta(minutes=args.download_minutes)).isoformat(), "speed": 4,
            "reason": "基准测试：录像下载"}
    s0, c0, t0 = rig.sim_stats(), proc_cpu(rig.proc.pid), time.perf_counter()
    r = await rig.http.post("/api/video/download", json=body)
    if r.status_code != 202 or "id" not in r.json():
        raise RuntimeError(f"download refused: {r.status_code} {r.text[:300]}")
    job = r.json()
    marks: dict[str, tuple[float, float, int]] = {"downloading": (t0, c0, 0)}
    last_print = t0
    deadline = t0 + args.download_minutes * 60 / 4 * 3 + 600
    while job["state"] not in ("done", "failed") and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
        job = (await rig.http.get(f"/api/video/download/{job['id']}")).json()
        now = time.perf_counter()
        if job["state"] not in marks:
            marks[job["state"]] = (now, proc_cpu(rig.proc.pid), job.get("bytes") or 0)
        if now - last_print > 60:
            last_print = now
            console.print(f"  download: {job['state']} {100 * job['progress']:.0f} % "
                          f"{(job.get('bytes') or 0) / 1e6:.1f} MB after {now - t0:.0f} s, {load()}")
    s1 = rig.sim_stats()
    if job["state"] != "done":
        raise RuntimeError(f"download did not finish: {json.dumps(job)[:300]}")
    t_w, c_w, raw_bytes = marks.get("watermarking", marks["done"])
    t_d, c_d, _ = marks["done"]
    size = 0
    async with rig.http.stream("GET", job["file"]) as resp:
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
    dl_wall = t_w - t0
    out = {"minutes": args.download_minutes, "speed": 4, "raw_mb": round(raw_bytes / 1e6, 1),
           "download_s": round(dl_wall, 1), "realtime_x": round(args.download_minutes * 60 / dl_wall, 2),
           "mb_per_s": round(raw_bytes / 1e6 / dl_wall, 3),
           "download_cpu_percent": round(100 * (c_w - c0) / dl_wall, 1),
           "watermark_s": round(t_d - t_w, 1),
           "watermark_cpu_percent": round(100 * (c_d - c_w) / max(t_d - t_w, 0.01), 1),
           "watermark_fps": round(args.download_minutes * 60 * args.fps / max(t_d - t_w, 0.01), 1),
           "file_mb": round(size / 1e6, 1), "simulator_cpu_s": round(s1["cpu"] - s0["cpu"], 1), "load": load()}
    console.print(f"  download: {json.dumps(out, ensure_ascii=False)}")
    return out


# -------------------------------------------------------------------------------------------------------- main
async def run(args: argparse.Namespace, work: Path, only: set[str], results: dict) -> None:
    async with Rig(args, work) as rig:
        if "start" in only:
            results["start"] = await bench_start(args, rig)
        if "concurrent" in only:
            results["concurrent"] = await bench_concurrent(args, rig)
        if "download" in only:
            results["download"] = await bench_download(args, rig)
    if "live" in only:  # after the app and the simulators are gone: the live node gets the same machine
        results["live"] = await bench_live(args, work)


def serve_app_profiled(port_file: Path, work: Path, url: str, linger: float, profile: str) -> None:
    """bench_video.serve_app under cProfile, dumped at uvicorn's shutdown (it re-raises SIGTERM afterwards)."""
    import cProfile

    prof = cProfile.Profile()
    serve = bv._serve

    def _serve(app: Any, pf: Path, on_started: Any = None) -> None:
        @app.on_event("shutdown")
        def _dump() -> None:
            prof.disable()
            prof.dump_stats(profile)

        prof.enable()
        serve(app, pf, on_started)

    bv._serve = _serve
    bv.serve_app(port_file, work, url, linger)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="start,concurrent,download,live")
    ap.add_argument("--starts", type=int, default=30)
    ap.add_argument("--cold-wait", type=float, default=8,
                    help="max seconds to wait for no device stream before a start")
    ap.add_argument("--playbacks", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds of the concurrent steps")
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--download-minutes", type=float, default=60)
    ap.add_argument("--devices", type=int, default=8, help="simulated devices, 4 channels each")
    ap.add_argument("--sim-procs", type=int, default=2, help="simulator processes (they encode the recordings)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--bitrate", type=int, default=1_000_000, help="of the simulator's live clip (unused here)")
    ap.add_argument("--live-bitrate", type=int, default=400_000, help="live clip, as the recordings' encoder")
    ap.add_argument("--linger", type=float, default=0.5)
    ap.add_argument("--profile-server", help="cProfile the app process into this file")
    ap.add_argument("--serve-app", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--serve-node", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_node:
        return bv.serve_node(Path(args.port_file), args.serve_node)
    if args.serve_app:
        w, url, linger = args.serve_app
        if os.environ.get("BENCH_REC_PROFILE"):
            return serve_app_profiled(Path(args.port_file), Path(w), url, float(linger),
                                      os.environ["BENCH_REC_PROFILE"])
        return bv.serve_app(Path(args.port_file), Path(w), url, float(linger))
    if args.profile_server:
        os.environ["BENCH_REC_PROFILE"] = str(Path(args.profile_server).resolve())
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="anfang-bench-rec-"))
    console.print(f"start: {load()}, {os.cpu_count()} CPUs, {args.width}x{args.height}, work dir {work}")
    results: dict[str, Any] = {"conditions": {"start_load": os.getloadavg(), "args": {
        k: v for k, v in vars(args).items() if not k.startswith("serve") and k != "port_file"}}}
    try:
        asyncio.run(run(args, work, only, results))
    finally:
        save_results("recordings", results)
        report(results, args)
        shutil.rmtree(work, ignore_errors=True)


def report(res: dict, args: argparse.Namespace) -> None:
    table = Table(title=f"录像 / recordings (issue 16), {args.width}x{args.height} H.264 {args.fps} fps: figures and "
                        "limits")
    for col in ("figure", "measured", "limit", ""):
        table.add_column(col)
    s = res.get("start")
    if s:
        table.add_row(f"playback start (POST → first moof), {s['n']} cold starts, p50 / p90 / max",
                      f"{s['p50']:.3f} / {s['p90']:.3f} / {s['max']:.3f} s", "p50 ≤ 2 s", mark(s["p50"] <= 2.0))
    c = res.get("concurrent")
    if c:
        ok = c["stalled"] == 0 and c["playing"] == c["playbacks"]
        table.add_row(f"{c['playbacks']} concurrent playbacks at 2×: max gap, playbacks stalled > 1 s",
                      f"{c['max_gap_s']:.2f} s, {c['stalled']} (playing {c['playing']})", "no stall > 1 s", mark(ok))
        table.add_row("  frames/s delivered / expected (sent by the simulator)",
                      f"{c['delivered_fps']:.0f} / {c['expected_fps']} ({c['sent_fps']:.0f}); slowest playback "
                      f"{c['min_fps_one_playback']:.1f}; {c.get('mbit_s_per_playback', 0):.2f} Mbit/s each",
                      f"{2 * args.fps}/s each", mark(c["delivered_fps"] >= 0.95 * c["expected_fps"]))
        table.add_row("  app CPU per playback (2×)", f"{c['cpu_ms_per_playback_s']:.1f} ms per playback-s "
                      f"({c['cpu_ms_per_frame']:.2f} ms/frame; app {c['server_cpu_percent']:.0f} %, simulator "
                      f"{c['simulator_cpu_percent']:.0f} % of a core)", "(print)", "")
    lv = res.get("live")
    if lv:
        table.add_row(f"  live, same resolution, {lv['streams']} streams at 1× (bench_video method)",
                      f"{lv['cpu_ms_per_stream_s']:.1f} ms per stream-s ({lv['cpu_ms_per_frame']:.2f} ms/frame); "
                      f"max gap {lv['max_gap_s']:.2f} s, {lv['delivered_fps']:.0f} of {lv['sent_fps']:.0f} fps",
                      "(print)", "")
    d = res.get("download")
    if d:
        table.add_row(f"download {d['minutes']:g} min at 4×: downloading phase",
                      f"{d['download_s']:.0f} s ({d['realtime_x']:.2f}× real time), {d['raw_mb']} MB, "
                      f"{d['mb_per_s']:.3f} MB/s, app CPU {d['download_cpu_percent']:.0f} %", "(print MB/s, CPU)", "")
        table.add_row("  watermark re-encode phase", f"{d['watermark_s']:.0f} s ({d['watermark_fps']:.0f} frames/s),"
                      f" app CPU {d['watermark_cpu_percent']:.0f} %; file {d['file_mb']} MB", "(print)", "")
    console.print(table)
    console.print(f"end: {load()}")


if __name__ == "__main__":
    main()
