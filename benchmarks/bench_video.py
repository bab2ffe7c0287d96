"""Live video figures of issue 15: concurrent relayed streams, the cost floor of a remux (Debian's ffmpeg), click to
first frame through the full path, one device stream to many viewers, H.265 -> H.264 transcode.

1. ``streams``: a media node (``anfang.media.node.MediaNode`` + ``views.node_router`` under uvicorn, the same
   uvicorn defaults as ``anfang serve``) in its own process; RTP/PS senders (``RtpPsSender``, one 1080p H.264
   4 Mbit/s 25 fps clip encoded once and shared) in another process; one WebSocket reader per stream
   (``websockets``) in this process, counting fragments (one ``moof`` per frame). Ramp 10, 25, 50 ... streams;
   per step: max gap between frames of each stream, stalls > 1 s, frames/s delivered vs sent, server CPU.
2. ``ffmpeg``: ``ffmpeg -re -f mpeg -i clip.ps -c copy -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof``
   on the same clip's PS (``anfang.media.ps.mux_ps``), CPU of that process (``os.wait4``) per stream-second;
   printed against ours (server CPU per stream per second), limit ours <= 2x.
3. ``click``: ``anfang``'s app (SIP server + embedded media node, SQLite) under uvicorn in its own process, the
   GB/T 28181 simulator in another; log in, POST /api/video/live, connect the WebSocket, time to the first moof,
   each time on a channel that is not open; then a second viewer of an open stream.
4. ``fanout``: same set-up, 100 viewers of one channel; the simulator's INVITE / stream count and server CPU.
5. ``transcode``: ``anfang.media.mp4.Transcoder`` on a 1080p H.265 clip, in this process: frames/s and CPU.

Run from the repository root: ``.venv/bin/python benchmarks/bench_video.py [--levels 10,25,50] [--seconds 20]
[--only streams,ffmpeg,click,fanout,transcode]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import console, save_results
from rich.table import Table

import anfang.media.tokens as tokens
from anfang.media.ps import EsFrame, mux_ps
from anfang.media.testsrc import clip

HERE = Path(__file__).resolve()
TICK = os.sysconf("SC_CLK_TCK")
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mark(ok: bool) -> str:
    return "[green]met" if ok else "[red]NOT met"


# ---------------------------------------------------------------------------------------------- server processes
def _serve(app: Any, port_file: Path, on_started: Any = None) -> None:
    """uvicorn with the same settings as ``anfang serve`` (cli.py: uvicorn.run(app, host, port, log_level,
    ws_per_message_deflate=False)): with ``--ws-deflate`` the readers offer deflate and, like serve, are refused."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws_per_message_deflate=False)

    async def main() -> None:
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
            if task.done():
                await task
                return
        port = server.servers[0].sockets[0].getsockname()[1]
        info = {"port": port, "pid": os.getpid(), **(on_started(app) if on_started else {})}
        port_file.write_text(json.dumps(info))
        await task

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop, as uvicorn.run picks it
        runner.run(main())


def serve_node(port_file: Path, secret: str) -> None:
    """A bare media node: node_router plus a small control API standing in for the SIP controller."""
    from fastapi import FastAPI

    from anfang.media.node import MediaNode, NodeConfig
    from anfang.media.views import node_router

    node = MediaNode(NodeConfig(node_id="bench", media_timeout=30, stall_timeout=30), secret.encode())
    app = FastAPI()

    @app.on_event("startup")
    async def _start() -> None:
        await node.start()

    @app.post("/bench/prepare")
    async def prepare(body: dict) -> dict:
        out = await node.prepare(body["key"], body["key"], ssrc=body["ssrc"], transport="UDP")
        await node.answer(body["key"], hosts=["127.0.0.1"], ssrc=body["ssrc"], connect=None)
        return out

    @app.post("/bench/close")
    async def close(body: dict) -> dict:
        for key in body["keys"]:
            await node.close(key)
        return {"streams": len(node.streams)}

    @app.get("/bench/stats")
    def stats() -> dict:
        s = list(node.streams.values())
        return {"streams": len(s), "packets": sum(x.packets for x in s), "bytes_in": sum(x.bytes_in for x in s),
                "lost": sum(x.reorder.stats.get("lost", 0) for x in s), "dropped": sum(x.dropped for x in s),
                "skipped": sum(v.skipped for x in s for v in x.viewers), "viewers": sum(len(x.viewers) for x in s)}

    app.include_router(node_router(node))
    profile = os.environ.get("BENCH_VIDEO_PROFILE")
    if not profile:
        _serve(app, port_file)
        return
    import cProfile

    prof = cProfile.Profile()

    @app.on_event("shutdown")  # uvicorn re-raises SIGTERM after its shutdown: dump here, not after serve()
    def _dump() -> None:
        prof.disable()
        prof.dump_stats(profile)

    prof.enable()
    _serve(app, port_file)


def serve_app(port_file: Path, work: Path, db_url: str, linger: float) -> None:
    """anfang's app: SIP server, embedded media node, console API."""
    from anfang.app import create_app
    from anfang.config import Settings
    from anfang.store.engine import Store

    settings = Settings(data_dir=work, database_url=db_url, sip_enabled=True, sip_port=0, sip_host="127.0.0.1",
                        media_bind_host="127.0.0.1", media_linger=linger, media_timeout=8.0)
    _serve(create_app(settings, Store(db_url)), port_file,
           on_started=lambda app: {"sip_port": app.state.gb28181.port})


def start_server(args: list[str], work: Path) -> tuple[subprocess.Popen, dict]:
    port_file = work / f"port-{secrets.token_hex(3)}.json"
    log = (work / f"{port_file.stem}.log").open("w")
    env = dict(os.environ, PYTHONPATH=f"{HERE.parent.parent / 'src'}:{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, str(HERE), *args, "--port-file", str(port_file)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start, see {log.name}")
        time.sleep(0.1)
    time.sleep(0.1)
    return proc, json.loads(port_file.read_text())


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------------ sender process
def sender_main(conn: Any, frames: list[EsFrame], fps: int) -> None:
    """RTP/PS senders on one event loop; commands over a pipe: add [(ssrc, port)], stop [ssrc], counts, quit."""
    from anfang.media.testsrc import RtpPsSender

    async def main() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: queue.put_nowait(conn.recv()))
        senders: dict[int, RtpPsSender] = {}

        async def start(ssrc: int, port: int, delay: float) -> None:
            await asyncio.sleep(delay)  # spread the streams' keyframes over the GOP, as real cameras are
            s = RtpPsSender(frames, ssrc=ssrc, fps=fps)
            senders[ssrc] = s
            await s.start_udp("127.0.0.1", port)

        while True:
            cmd, arg = await queue.get()
            if cmd == "add":
                await asyncio.gather(*(start(ssrc, port, random.uniform(0, 1.0)) for ssrc, port in arg))
                conn.send(len(senders))
            elif cmd == "stop":
                for ssrc in arg:
                    s = senders.pop(ssrc, None)
                    if s is not None:
                        await s.stop()
                conn.send(len(senders))
            elif cmd == "counts":
                conn.send({"frames": {k: s.frames_sent for k, s in senders.items()},
                           "bytes": sum(s.bytes_sent for s in senders.values()),
                           "packets": sum(s.packets_sent for s in senders.values()),
                           "cpu": time.process_time()})
            else:
                for s in senders.values():
                    await s.stop()
                conn.send("bye")
                return

    asyncio.run(main())


class Senders:
    def __init__(self, frames: list[EsFrame], fps: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=sender_main, args=(child, frames, fps), daemon=True)
        self.proc.start()

    def call(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self.conn.recv()

    async def acall(self, cmd: str, arg: Any = None) -> Any:
        return await asyncio.to_thread(self.call, cmd, arg)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("quit")
        self.proc.join(10)


# ------------------------------------------------------------------------------------------------------ readers
class Reader:
    """One WebSocket viewer counting MP4 fragments (one per frame) and the gaps between them."""

    def __init__(self, url: str, deflate: bool) -> None:
        self.url, self.deflate = url, deflate
        self.frames = 0
        self.first: float | None = None
        self.opened = time.perf_counter()
        self.last = 0.0
        self.max_gap = 0.0
        self.stalls = 0
        self.error = ""
        self.task: asyncio.Task | None = None
        self.ws: Any = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    def window(self) -> None:
        self.last = time.perf_counter()
        self.max_gap, self.stalls = 0.0, 0

    def end_window(self) -> None:
        gap = time.perf_counter() - self.last
        self.max_gap = max(self.max_gap, gap)
        self.stalls += gap > 1.0

    async def run(self) -> None:
        import websockets

        try:
            async with websockets.connect(self.url, max_size=None, max_queue=None,
                                          compression="deflate" if self.deflate else None) as ws:
                self.ws = ws
                async for msg in ws:
                    if isinstance(msg, str):
                        m = json.loads(msg)
                        if m.get("type") in ("error", "closed"):
                            self.error = m.get("message") or m["type"]
                            return
                        continue
                    if msg[4:8] != b"moof":
                        continue
                    now = time.perf_counter()
                    if self.first is None:
                        self.first = now
                    elif self.last:
                        gap = now - self.last
                        if gap > self.max_gap:
                            self.max_gap = gap
                        if gap > 1.0:
                            self.stalls += 1
                    self.last = now
                    self.frames += 1
        except Exception as exc:  # noqa: BLE001 - reported in the table
            self.error = self.error or f"{type(exc).__name__}: {exc}"[:120]

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


async def wait_for(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


# ------------------------------------------------------------------------------------------- 1. concurrent streams
async def bench_streams(args: argparse.Namespace, work: Path, frames: list[EsFrame]) -> dict:
    import httpx

    secret = secrets.token_hex(16)
    proc, info = start_server(["--serve-node", secret], work)
    base = f"127.0.0.1:{info['port']}"
    senders = Senders(frames, args.fps)
    readers: dict[int, Reader] = {}
    rows = []
    table = Table(title=f"1. 并发实时流 / concurrent live streams, {args.width}x{args.height} H.264 "
                        f"{args.bitrate / 1e6:g} Mbit/s {args.fps} fps, UDP → media node → WebSocket "
                        f"({args.seconds:g} s per step)")
    for col in ("streams", "playing", "max gap s", "stalls > 1 s", "fps sent", "fps delivered", "deliv. / sent",
                "server CPU %", "CPU ms / stream-s", "lost pkts", "≥ 50, no stall"):
        table.add_column(col, justify="right")
    try:
        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=30) as http:
            for level in args.levels:
                new = list(range(len(readers), level))
                add = []
                for i in new:
                    key, ssrc = f"bench{i:04d}", 100_000_000 + i
                    port = (await http.post("/bench/prepare", json={"key": key, "ssrc": ssrc})).json()["port"]
                    claims = tokens.StreamClaims(key, key, "bench", "city_admin", 1, time.time() + 3600, f"v{i}")
                    r = Reader(f"ws://{base}/media/ws/{key}?h265=0&token={tokens.sign(secret.encode(), claims)}",
                               args.ws_deflate)
                    r.start()
                    readers[i] = r
                    add.append((ssrc, port))
                await wait_for(lambda: all(r.ws is not None or r.error for r in readers.values()), 30)
                await senders.acall("add", add)
                await wait_for(lambda: all(r.frames or r.error for r in readers.values()), 20)
                await asyncio.sleep(args.settle)
                started = sum(1 for r in readers.values() if r.frames)
                c0, s0, st0 = proc_cpu(proc.pid), await senders.acall("counts"), (await http.get("/bench/stats")).json()
                r0 = time.process_time()
                d0 = {i: r.frames for i, r in readers.items()}
                t0 = time.perf_counter()
                for r in readers.values():
                    r.window()
                await asyncio.sleep(args.seconds)
                for r in readers.values():
                    r.end_window()
                wall = time.perf_counter() - t0
                reader_cpu = (time.process_time() - r0) / wall
                c1, s1, st1 = proc_cpu(proc.pid), await senders.acall("counts"), (await http.get("/bench/stats")).json()
                sent = sum(s1["frames"].values()) - sum(s0["frames"].get(k, 0) for k in s1["frames"])
                delivered = sum(r.frames - d0[i] for i, r in readers.items())
                worst = max(r.max_gap for r in readers.values())
                stalled = sum(1 for r in readers.values() if r.stalls or r.error)
                cpu = (c1 - c0) / wall
                row = {"streams": level, "started": started, "max_gap_s": round(worst, 3), "stalled_streams": stalled,
                       "sent_fps": round(sent / wall, 1), "delivered_fps": round(delivered / wall, 1),
                       "server_cpu_percent": round(100 * cpu, 1), "cpu_ms_per_stream_s": round(1000 * cpu / level, 2),
                       "lost_packets": st1["lost"] - st0["lost"], "viewer_skipped": st1["skipped"],
                       "sender_cpu_percent": round(100 * (s1["cpu"] - s0["cpu"]) / wall, 1),
                       "reader_cpu_percent": round(100 * reader_cpu, 1),
                       "load": load(), "errors": sorted({r.error for r in readers.values() if r.error})[:3]}
                rows.append(row)
                row["kept_up"] = stalled == 0 and started == level and delivered >= 0.95 * sent
                ok = level >= 50 and row["kept_up"]
                table.add_row(str(level), str(started), f"{worst:.2f}", str(stalled), f"{row['sent_fps']:.0f}",
                              f"{row['delivered_fps']:.0f}", f"{delivered / max(sent, 1):.3f}",
                              f"{row['server_cpu_percent']:.0f}", f"{row['cpu_ms_per_stream_s']:.1f}",
                              str(row["lost_packets"]),
                              mark(ok) if level >= 50 else ("kept up" if row["kept_up"] else "[red]fell behind"))
                console.print(f"  {level} streams: {json.dumps(row, ensure_ascii=False)}")
                if args.stop_on_stall and stalled:
                    break
    finally:
        for r in readers.values():
            await r.close()
        senders.close()
        stop_server(proc)
    console.print(table)
    return {"rows": rows}


# -------------------------------------------------------------------------------------------------- 2. ffmpeg floor
def ps_file(frames: list[EsFrame], fps: int, seconds: float, path: Path) -> Path:
    step = 90_000 // fps
    span = (frames[-1].pts or 0) - (frames[0].pts or 0) + step
    with path.open("wb") as f:
        n = 0
        while n < seconds * fps:
            fr = frames[n % len(frames)]
            f.write(mux_ps(fr.data, codec=fr.codec, pts=(n // len(frames)) * span + (fr.pts or 0) + 90_000,
                           keyframe=fr.keyframe))
            n += 1
    return path


def bench_ffmpeg(args: argparse.Namespace, work: Path, frames: list[EsFrame]) -> dict:
    """ffmpeg -c copy, PS -> fragmented MP4, at real time: CPU per stream-second (os.wait4 of that process)."""
    if not Path(FFMPEG).exists():
        console.print("[red]ffmpeg not installed (apt-get install -y ffmpeg): step 2 skipped")
        return {}
    src = ps_file(frames, args.fps, args.ffmpeg_seconds, work / "clip.ps")
    out = {}
    for flags in ("frag_keyframe+empty_moov+default_base_moof", "frag_every_frame+empty_moov+default_base_moof"):
        t0 = time.perf_counter()
        p = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "mpeg", "-i",
                              str(src), "-c", "copy", "-f", "mp4", "-movflags", flags, "-y", "/dev/null"])
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        cpu = ru.ru_utime + ru.ru_stime
        out[flags.split("+")[0]] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 2), "rc": p.returncode,
                                    "cpu_ms_per_stream_s": round(1000 * cpu / args.ffmpeg_seconds, 2)}
    out["size_mb"] = round(src.stat().st_size / 1e6, 1)
    out["seconds"] = args.ffmpeg_seconds
    out["load"] = load()
    return out


# ------------------------------------------------------------------------ 3./4. click to first frame, fan-out
def sim_main(conn: Any, sip_port: int, kw: dict) -> None:
    from anfang.gb28181.simulator import Simulator

    async def main() -> None:
        sim = Simulator(("127.0.0.1", sip_port), heartbeat=20.0, **kw)
        await sim.prepare_media()
        await sim.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: queue.put_nowait(conn.recv()))
        conn.send("ready")
        while True:
            cmd = await queue.get()
            if cmd == "stats":
                calls = [c for d in sim.devices for c in d.calls.values()]
                conn.send({"invites": sum(d.invites for d in sim.devices), "streams": sim.streams,
                           "bytes_sent": sum(c.sender.bytes_sent for c in calls),
                           "frames_sent": sum(c.sender.frames_sent for c in calls), "cpu": time.process_time()})
            else:
                await sim.stop()
                conn.send("bye")
                return

    asyncio.run(main())


def sim_kwargs(args: argparse.Namespace) -> dict:
    return {"count": args.devices, "channels": 4, "width": args.width, "height": args.height, "fps": args.fps,
            "bitrate": args.bitrate, "region": "350404", "media_ports": (31000, 31999)}


async def first_moof(http: Any, base: str, channel: str) -> tuple[float, Reader]:
    t0 = time.perf_counter()
    r = await http.post("/api/video/live", json={"channel_id": channel})
    r.raise_for_status()
    info = r.json()
    reader = Reader(f"ws://{base}{info['ws_url']}&token={info['token']}", False)
    reader.opened = t0
    reader.start()
    await wait_for(lambda: reader.first is not None or reader.error, 15)
    if reader.first is None:
        raise RuntimeError(f"no picture on {channel}: {reader.error}")
    return reader.first - t0, reader


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * len(v)) - 1))] if v else float("nan")


async def bench_click(args: argparse.Namespace, work: Path, do_click: bool, do_fanout: bool) -> dict:
    import httpx

    from anfang.devices.service import DeviceService
    from anfang.gb28181.simulator import Simulator
    from anfang.security.service import create_user
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    db_url = f"sqlite:///{work / 'anfang.db'}"
    upgrade(db_url)
    store = Store(db_url)
    password = "bench-pass-1"
    with store.session() as s:
        create_user(s, username="benchcity", password=password, role="city_admin")
    kw = sim_kwargs(args)
    devs = Simulator(("127.0.0.1", 1), **kw).devices  # the same ids and passwords as the simulator process
    svc = DeviceService(store)
    for d in devs:
        svc.upsert("gb28181", d.device_id, name=d.name, community_code="350404001001", password=d.password,
                   type_code="118", review="approved")
    proc, info = start_server(["--serve-app", str(work), db_url, str(args.linger)], work)
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    sim = ctx.Process(target=sim_main, args=(child, info["sip_port"], kw), daemon=True)
    sim.start()
    result: dict[str, Any] = {}
    base = f"127.0.0.1:{info['port']}"
    try:
        if not await asyncio.to_thread(conn.poll, 180) or conn.recv() != "ready":
            raise RuntimeError("simulator did not start")
        ok = await wait_for(lambda: all(len(svc.channels("gb28181", d.device_id)) == 4 for d in devs), 60)
        channels = [c.channel_id for d in devs for c in svc.channels("gb28181", d.device_id)]
        console.print(f"  {len(devs)} devices registered, {len(channels)} channels (catalog complete: {ok})")

        def sim_stats() -> dict:
            conn.send("stats")
            return conn.recv()

        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=30) as http:
            token = (await http.post("/api/auth/login", json={"username": "benchcity", "password": password})
                     ).json()["token"]
            http.headers["Authorization"] = f"Bearer {token}"
            if do_click:
                firsts, seconds_, order = [], [], []
                while len(order) < args.clicks:
                    order += channels
                order = order[:args.clicks]
                for ch in order:
                    await wait_for(lambda: sim_stats()["streams"] == 0, 10)  # every channel closed: a cold start
                    t, r1 = await first_moof(http, base, ch)
                    firsts.append(t)
                    if len(seconds_) < args.second_viewers:
                        await asyncio.sleep(0.3)
                        t2, r2 = await first_moof(http, base, ch)
                        seconds_.append(t2)
                        await r2.close()
                    await r1.close()
                result["click"] = {"n": len(firsts), "p50": pct(firsts, 50), "p99": pct(firsts, 99),
                                   "max": max(firsts), "second_n": len(seconds_), "second_p50": pct(seconds_, 50),
                                   "second_p99": pct(seconds_, 99), "load": load()}
                console.print(f"  click: {json.dumps(result['click'])}")
            if do_fanout:
                await wait_for(lambda: sim_stats()["streams"] == 0, 10)
                s0 = sim_stats()
                ch = channels[0]
                t, first = await first_moof(http, base, ch)
                viewers = [first]
                for _ in range(args.viewers - 1):
                    r = await http.post("/api/video/live", json={"channel_id": ch})
                    info_v = r.json()
                    rd = Reader(f"ws://{base}{info_v['ws_url']}&token={info_v['token']}", args.ws_deflate)
                    rd.start()
                    viewers.append(rd)
                await wait_for(lambda: all(v.frames or v.error for v in viewers), 30)
                await asyncio.sleep(args.settle)
                c0, m0, d0 = proc_cpu(proc.pid), sim_stats(), [v.frames for v in viewers]
                t0 = time.perf_counter()
                for v in viewers:
                    v.window()
                await asyncio.sleep(args.seconds)
                for v in viewers:
                    v.end_window()
                wall = time.perf_counter() - t0
                c1, m1 = proc_cpu(proc.pid), sim_stats()
                delivered = sum(v.frames - d for v, d in zip(viewers, d0, strict=True))
                result["fanout"] = {
                    "viewers": len(viewers), "playing": sum(1 for v in viewers if v.frames),
                    "invites": m1["invites"] - s0["invites"], "device_streams": m1["streams"],
                    "device_mbit_s": round(8 * (m1["bytes_sent"] - m0["bytes_sent"]) / wall / 1e6, 2),
                    "device_fps": round((m1["frames_sent"] - m0["frames_sent"]) / wall, 1),
                    "delivered_fps_per_viewer": round(delivered / wall / len(viewers), 1),
                    "max_gap_s": round(max(v.max_gap for v in viewers), 3),
                    "stalled": sum(1 for v in viewers if v.stalls or v.error),
                    "server_cpu_percent": round(100 * (c1 - c0) / wall, 1), "load": load()}
                console.print(f"  fan-out: {json.dumps(result['fanout'])}")
                for v in viewers:
                    await v.close()
    finally:
        with contextlib.suppress(Exception):
            conn.send("quit")
            conn.poll(10)
        sim.join(10)
        if sim.is_alive():
            sim.terminate()
        stop_server(proc)
        store.dispose()
    return result


# ------------------------------------------------------------------------------- 1b. ingest, layer by layer
def bench_ingest(args: argparse.Namespace, frames: list[EsFrame]) -> dict:
    """The node's per-stream work without sockets, in this process: the RTP packets of ``--ingest-seconds`` of
    the clip through each layer in turn (cumulative), then ``LiveStream.on_rtp`` whole (mux + one viewer)."""
    from anfang.media.ps import PsDemuxer
    from anfang.media.rtp import Reorder, parse_rtp
    from anfang.media.stream import LiveStream, Viewer
    from anfang.media.testsrc import RtpPsSender

    sender = RtpPsSender(frames, ssrc=7, fps=args.fps)
    step = 90_000 // args.fps
    span = (frames[-1].pts or 0) - (frames[0].pts or 0) + step
    n = int(args.ingest_seconds * args.fps)
    packets: list[bytes] = []
    for i in range(n):
        fr = frames[i % len(frames)]
        packets += sender.packets_for(fr, (i // len(frames)) * span + (fr.pts or 0))

    def parse() -> None:
        for p in packets:
            parse_rtp(p)

    def reorder() -> None:
        r = Reorder(window=24)
        for p in packets:
            r.push(parse_rtp(p))

    def demux() -> None:
        r, d, ts = Reorder(window=24), PsDemuxer(), None
        for p in packets:
            for pkt in r.push(parse_rtp(p)):
                if ts is not None and pkt.timestamp != ts:
                    d.flush()
                ts = pkt.timestamp
                d.feed(pkt.payload)
                if pkt.marker:
                    d.flush()

    def full() -> None:
        stream = LiveStream("k", "k", ssrc=7, transport="UDP")
        viewer = Viewer()
        stream.add_viewer(viewer)
        for p in packets:
            stream.on_rtp(p, "127.0.0.1")
            while not viewer.queue.empty():
                viewer.queue.get_nowait()
        assert stream.frames >= n - 1, (stream.frames, n)

    out: dict[str, Any] = {"packets": len(packets), "frames": n, "load": load()}
    for name, fn in (("parse_rtp", parse), ("+ Reorder", reorder), ("+ PsDemuxer", demux),
                     ("LiveStream.on_rtp (+ Fmp4Muxer, 1 viewer)", full)):
        best = float("inf")
        for _ in range(3):  # best of three: the machine is shared
            c0 = time.process_time()
            fn()
            best = min(best, time.process_time() - c0)
        out[name] = {"us_per_packet": round(1e6 * best / len(packets), 2),
                     "ms_per_stream_s": round(1000 * best / (n / args.fps), 2)}
    return out


# ---------------------------------------------------------------------------------------------------- 5. transcode
def bench_transcode(args: argparse.Namespace) -> dict:
    from anfang.media.mp4 import Transcoder

    frames = clip("h265", args.width, args.height, args.fps, args.bitrate, args.fps, 2)
    step = 90_000 // args.fps
    span = (frames[-1].pts or 0) - (frames[0].pts or 0) + step
    tr = Transcoder()
    n = int(args.transcode_seconds * args.fps)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fr = frames[i % len(frames)]
        tr.push(EsFrame("h265", (i // len(frames)) * span + (fr.pts or 0), fr.data, fr.keyframe))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames_in": tr.frames_in, "frames_out": tr.frames_out, "fps": round(tr.frames_out / wall, 1),
            "cpu_percent": round(100 * cpu / wall, 1), "cpu_ms_per_frame": round(1000 * cpu / max(tr.frames_out, 1), 1),
            "realtime_cores": round(cpu / (n / args.fps), 2), "load": load()}


# --------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="10,25,50", help="concurrent stream counts to ramp through")
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds per step")
    ap.add_argument("--settle", type=float, default=3, help="seconds after every stream plays before measuring")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--bitrate", type=int, default=4_000_000)
    ap.add_argument("--ffmpeg-seconds", type=float, default=30)
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--second-viewers", type=int, default=15)
    ap.add_argument("--devices", type=int, default=8, help="simulated devices (4 channels each) for clicks")
    ap.add_argument("--linger", type=float, default=0.5, help="media_linger of the app (s)")
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--transcode-seconds", type=float, default=10)
    ap.add_argument("--ingest-seconds", type=float, default=10)
    ap.add_argument("--ws-deflate", action=argparse.BooleanOptionalAction, default=False,
                    help="readers offer permessage-deflate (as a browser does); off by default")
    ap.add_argument("--stop-on-stall", action="store_true")
    ap.add_argument("--profile-server", help="cProfile the media node of step 1 into this file")
    ap.add_argument("--only", default="streams,ingest,ffmpeg,click,fanout,transcode")
    ap.add_argument("--serve-node", help=argparse.SUPPRESS)
    ap.add_argument("--serve-app", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_node:
        return serve_node(Path(args.port_file), args.serve_node)
    if args.serve_app:
        work, url, linger = args.serve_app
        return serve_app(Path(args.port_file), Path(work), url, float(linger))
    args.levels = [int(x) for x in args.levels.split(",")]
    if args.profile_server:
        os.environ["BENCH_VIDEO_PROFILE"] = str(Path(args.profile_server).resolve())
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="anfang-bench-video-"))
    console.print(f"start: {load()}, {os.cpu_count()} CPUs, work dir {work}")
    results: dict[str, Any] = {"conditions": {"start_load": os.getloadavg(), "args": {
        k: v for k, v in vars(args).items() if not k.startswith("serve") and k != "port_file"}}}
    frames: list[EsFrame] = []
    if only & {"streams", "ingest", "ffmpeg"}:
        t0 = time.perf_counter()
        frames = clip("h264", args.width, args.height, args.fps, args.bitrate, args.fps, 2)
        size = sum(len(f.data) for f in frames)
        console.print(f"clip: {len(frames)} frames {args.width}x{args.height}, {8 * size / 2 / 1e6:.2f} Mbit/s, "
                      f"encoded in {time.perf_counter() - t0:.1f} s")
    try:
        if "streams" in only:
            results["streams"] = asyncio.run(bench_streams(args, work, frames))
        if "ingest" in only:
            results["ingest"] = bench_ingest(args, frames)
            console.print(f"  ingest: {json.dumps(results['ingest'], ensure_ascii=False)}")
        if "ffmpeg" in only:
            results["ffmpeg"] = bench_ffmpeg(args, work, frames)
        if only & {"click", "fanout"}:
            results.update(asyncio.run(bench_click(args, work, "click" in only, "fanout" in only)))
        if "transcode" in only:
            results["transcode"] = bench_transcode(args)
    finally:
        save_results("video", results)
        report(results)
        shutil.rmtree(work, ignore_errors=True)


def report(res: dict) -> None:
    table = Table(title="视频 / live video (issue 15): figures and limits")
    for col in ("figure", "measured", "limit", ""):
        table.add_column(col)
    rows = (res.get("streams") or {}).get("rows", [])
    if rows:
        best = max((r["streams"] for r in rows if r.get("kept_up")), default=0)
        table.add_row("concurrent streams, no stall > 1 s, ≥ 95 % of frames delivered",
                      f"{best} (of {rows[-1]['streams']} tried)", "≥ 50", mark(best >= 50))
    ff = res.get("ffmpeg") or {}
    if rows and ff:
        # the CPU per stream is only meaningful where the node kept up (a starved node drops and skips work)
        at = next((r for r in reversed(rows) if r.get("kept_up")), rows[0])
        floor = ff["frag_keyframe"]["cpu_ms_per_stream_s"]
        ratio = at["cpu_ms_per_stream_s"] / floor
        table.add_row(f"server CPU per stream at {at['streams']} streams / ffmpeg -c copy",
                      f"{at['cpu_ms_per_stream_s']:.1f} / {floor:.1f} ms per stream-s = {ratio:.2f}×", "≤ 2×",
                      mark(ratio <= 2))
        table.add_row("  (ffmpeg with a fragment per frame, as ours)",
                      f"{ff['frag_every_frame']['cpu_ms_per_stream_s']:.1f} ms per stream-s", "", "")
    elif ff:
        table.add_row("ffmpeg -c copy CPU", f"{ff['frag_keyframe']['cpu_ms_per_stream_s']:.1f} ms per stream-s", "",
                      "")
    c = res.get("click")
    if c:
        table.add_row(f"click to first frame, {c['n']} cold opens, p50 / p99",
                      f"{c['p50']:.3f} / {c['p99']:.3f} s (max {c['max']:.3f})", "≤ 1.0 / ≤ 2.0 s",
                      mark(c["p50"] <= 1.0 and c["p99"] <= 2.0))
        table.add_row(f"second viewer of an open stream, {c['second_n']}, p50", f"{c['second_p50']:.3f} s",
                      "≤ 0.3 s", mark(c["second_p50"] <= 0.3))
    f = res.get("fanout")
    if f:
        table.add_row(f"one device stream to {f['viewers']} viewers: INVITEs / device streams",
                      f"{f['invites']} / {f['device_streams']} ({f['device_mbit_s']} Mbit/s sent once)", "1 / 1",
                      mark(f["invites"] == 1 and f["device_streams"] == 1))
        table.add_row("  server CPU, playing viewers, fps per viewer, stalls",
                      f"{f['server_cpu_percent']} %, {f['playing']}, {f['delivered_fps_per_viewer']}, "
                      f"{f['stalled']}", "(print)", "")
    t = res.get("transcode")
    if t:
        table.add_row("H.265 → H.264 transcode, 1080p", f"{t['fps']} frames/s at {t['cpu_percent']} % CPU "
                      f"({t['cpu_ms_per_frame']} ms/frame)", "(print; real time = 25)", "")
    console.print(table)
    console.print(f"end: {load()}")


if __name__ == "__main__":
    main()
