"""GB/T 28181 server figures (printed, not asserted): REGISTER-with-digest rate and its ratio to a bare UDP echo on
the same event loop, a registration storm, and sustained keepalives with none falsely offline.

The server runs in its own process (uvloop when installed, SQLite scratch database); the simulated devices run in
another process (the machine has 2 cores, shared with other work: the load generator takes one of them).

    .venv/bin/python benchmarks/bench_gb28181.py [--storm 20000] [--keepalive-devices 20000]
        [--keepalive-rate 1667] [--keepalive-seconds 60] [--seconds 8]

Keepalive load is compressed: 100,000 devices at 60 s heartbeats are 1,667 keepalives/s; the benchmark keeps
``--keepalive-devices`` devices with the heartbeat shortened so they send that rate (and scales heartbeat × count
with it), and reports how many went offline although they kept sending.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def _loop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- server processes -------------------------------------------------------------------------------------------
def echo_server(conn) -> None:  # noqa: ANN001
    kind = _loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport) -> None:  # noqa: ANN001
            self.t = transport

        def datagram_received(self, data: bytes, addr) -> None:  # noqa: ANN001
            self.t.sendto(data, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        conn.send((tr.get_extra_info("sockname")[1], kind))
        while not conn.poll():
            await asyncio.sleep(0.1)
        conn.recv()
        tr.close()

    asyncio.run(main())


def gb_server(conn, heartbeat: float, count: int) -> None:  # noqa: ANN001
    kind = _loop()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from anfang.gb28181.server import GbConfig, GbServer
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    url = f"sqlite:///{tempfile.mkdtemp(prefix='gbbench')}/gb.db"
    upgrade(url)
    store = Store(url)

    async def main() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, query_on_register=False, heartbeat_interval=heartbeat,
                                   heartbeat_count=count, tick=min(1.0, heartbeat / 2), flush_interval=10.0),
                          store)
        await server.start()
        conn.send((server.port, kind))
        while True:
            while not conn.poll():
                await asyncio.sleep(0.05)
            cmd = conn.recv()
            if cmd == "stop":
                break
            if cmd == "drain":
                await server.drain()
            statuses: dict[str, int] = {}
            for st in server.devices.values():
                statuses[st.status] = statuses.get(st.status, 0) + 1
            offline = [st.device_id for st in server.devices.values() if st.status == "offline"]
            conn.send({"cpu": _cpu(), "wall": time.perf_counter(), "statuses": statuses, **server.stats,
                       "ops_pending": len(server._ops), "offline_ids": offline if cmd == "offline" else []})
        await server.stop()

    asyncio.run(main())


def _ask(conn, cmd: str = "stats") -> dict:  # noqa: ANN001
    conn.send(cmd)
    return conn.recv()


def _start(target, *args) -> tuple:  # noqa: ANN001, ANN002
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    port, kind = parent.recv()
    return proc, parent, port, kind


# ---- load generators (this process) -----------------------------------------------------------------------------
async def echo_client(port: int, seconds: float, window: int = 256) -> float:
    loop = asyncio.get_running_loop()
    count = 0
    payload = b"x" * 400  # about a REGISTER's size

    class C(asyncio.DatagramProtocol):
        def connection_made(self, transport) -> None:  # noqa: ANN001
            self.t = transport

        def datagram_received(self, data: bytes, addr) -> None:  # noqa: ANN001
            nonlocal count
            count += 1
            self.t.sendto(payload)

    tr, _ = await loop.create_datagram_endpoint(C, remote_addr=("127.0.0.1", port))
    for _ in range(window):
        tr.sendto(payload)
    await asyncio.sleep(1.0)
    start, c0 = time.perf_counter(), count
    await asyncio.sleep(seconds)
    rate = (count - c0) / (time.perf_counter() - start)
    tr.close()
    return rate


async def register_rate(port: int, seconds: float, devices: int = 4000, concurrency: int = 400) -> float:
    from anfang.gb28181.simulator import Simulator

    sim = Simulator(("127.0.0.1", port), count=devices, channels=0, heartbeat=3600, first_serial=500_000)
    await sim.start(register=False, keepalive=False)
    done = 0
    stop_at = time.perf_counter() + seconds + 1.0
    measure_from = time.perf_counter() + 1.0
    measured = 0

    async def worker(i: int) -> None:
        nonlocal done, measured
        j = i
        while time.perf_counter() < stop_at:
            dev = sim.devices[j % devices]
            j += concurrency
            dev.call_id = ""  # each one a fresh registration dialogue: 401 challenge, digest answer, 200
            try:
                if await sim.register(dev) == 200:
                    done += 1
                    if time.perf_counter() >= measure_from:
                        measured += 1
            except TimeoutError:
                pass

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await sim.stop()
    return measured / seconds


async def storm(port: int, n: int, concurrency: int = 1000) -> tuple[float, int]:
    from anfang.gb28181.simulator import Simulator

    sim = Simulator(("127.0.0.1", port), count=n, channels=0, heartbeat=3600, first_serial=1)
    await sim.start(register=False, keepalive=False)
    seconds = await sim.register_all(concurrency=concurrency)
    await sim.stop()
    return seconds, sim.failures


async def keepalives(port: int, n: int, heartbeat: float, seconds: float, conn) -> dict:  # noqa: ANN001
    from anfang.gb28181.simulator import Simulator

    sim = Simulator(("127.0.0.1", port), count=n, channels=0, heartbeat=heartbeat, first_serial=1)
    await sim.start(register=False, keepalive=True)  # keepalives start as each device registers
    t_reg = await sim.register_all(concurrency=1000)
    await asyncio.sleep(heartbeat)  # warm up: one full round
    s0 = _ask(conn)
    sent0 = sum(d.keepalives_sent for d in sim.devices)
    await asyncio.sleep(seconds)
    s1 = _ask(conn, "offline")
    sent1 = sum(d.keepalives_sent for d in sim.devices)
    # falsely offline: the server says offline, the device believes it is registered and keeps sending
    false_offline = sum(1 for i in s1["offline_ids"] if sim.by_id[i].registered and sim.by_id[i].running)
    await sim.stop()
    wall = s1["wall"] - s0["wall"]
    return {"register_s": t_reg, "failures": sim.failures, "answered_per_s": (sent1 - sent0) / wall,
            "server_per_s": (s1["keepalives"] - s0["keepalives"]) / wall,
            "cpu_share": (s1["cpu"] - s0["cpu"]) / wall, "statuses": s1["statuses"], "false_offline": false_offline}


def sipp_register(port: int, seconds: float, rate: int = 6000) -> float:
    """SIPp (C++) offering ``rate`` REGISTER dialogues/s for about ``seconds``; returns its wall time."""
    scenario = Path(__file__).resolve().parent.parent / "tests" / "sipp" / "register.xml"
    device = "35040200001320099999"
    start = time.perf_counter()
    subprocess.run(["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-s", device, "-au", device,
                    "-ap", "anfang28181", "-r", str(rate), "-m", str(int(rate * seconds)), "-l", "3000",
                    "-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", str(int(seconds * 6))],
                   capture_output=True, text=True)
    return time.perf_counter() - start


def sipp_storm(port: int, n: int, rate: int = 3000) -> float:
    """SIPp registering ``n`` distinct devices (injection file) at up to ``rate``/s; returns its wall time."""
    scenario = Path(__file__).resolve().parent.parent / "tests" / "sipp" / "register_csv.xml"
    from anfang.gb28181.ids import make_gb_id

    csv = Path(tempfile.mkdtemp(prefix="gbsipp")) / "devices.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{make_gb_id('35040300', '132', 200_000 + i)};anfang28181\n"
                                            for i in range(n)))
    start = time.perf_counter()
    subprocess.run(["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-inf", str(csv), "-au", "storm",
                    "-ap", "anfang28181", "-r", str(rate),
                    "-m", str(n), "-l", "5000", "-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", "120"],
                   capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--storm", type=int, default=20_000)
    ap.add_argument("--keepalive-devices", type=int, default=20_000)
    ap.add_argument("--keepalive-rate", type=float, default=100_000 / 60)
    ap.add_argument("--keepalive-seconds", type=float, default=60.0)
    ap.add_argument("--only", choices=["echo", "register", "storm", "keepalive"], action="append",
                    help="run only these parts (repeatable)")
    args = ap.parse_args()
    client_loop = _loop()
    print(f"cores: {os.cpu_count()} (shared with other work); client loop {client_loop}")

    parts = set(args.only or ["echo", "register", "storm", "keepalive"])
    echo = 0.0
    if parts & {"echo", "register"}:
        proc, conn, port, kind = _start(echo_server)
        echo = asyncio.run(echo_client(port, args.seconds))
        conn.send("stop")
        proc.join(5)
        print(f"bare UDP echo ({kind}, 400-byte datagrams, 256 in flight): {echo:,.0f} round trips/s")

    if "register" in parts:
        proc, conn, port, kind = _start(gb_server, 3600.0, 3)
        s0 = _ask(conn)
        rate = asyncio.run(register_rate(port, args.seconds))
        s = _ask(conn)
        server_cpu = (s["cpu"] - s0["cpu"]) / (s["wall"] - s0["wall"])
        print(f"REGISTER with digest ({kind}): {rate:,.0f} registrations/s (each = 2 requests, 2 responses, MD5) "
              f"→ {rate / echo:.1%} of the echo round-trip rate, {2 * rate / echo:.1%} counting datagram pairs; "
              f"challenges {s['challenges']:,}, rejected {s['rejected']}; server CPU {server_cpu:.0%} of one core "
              f"(the Python load generator is the limit when this is well below 100 %)")
        if shutil.which("sipp"):
            elapsed = sipp_register(port, args.seconds)
            s2 = _ask(conn)
            sipp_rate = (s2["registered"] - s["registered"]) / elapsed
            print(f"REGISTER with digest, SIPp as the load generator: {sipp_rate:,.0f} registrations/s "
                  f"→ {sipp_rate / echo:.1%} of the echo round-trip rate; server CPU "
                  f"{(s2['cpu'] - s['cpu']) / elapsed:.0%} of one core; rejected {s2['rejected'] - s['rejected']}")
        conn.send("stop")
        proc.join(5)

    if "storm" in parts:
        proc, conn, port, kind = _start(gb_server, 3600.0, 3)
        seconds, failures = asyncio.run(storm(port, args.storm))
        t0 = time.perf_counter()
        s = _ask(conn, "drain")
        print(f"registration storm: {args.storm:,} new devices registered with digest in {seconds:.1f} s "
              f"({args.storm / seconds:,.0f}/s, failures {failures}); database caught up "
              f"{time.perf_counter() - t0:.1f} s later; online {s['statuses'].get('online', 0):,}")
        conn.send("stop")
        proc.join(5)
        if shutil.which("sipp"):
            proc, conn, port, kind = _start(gb_server, 3600.0, 3)
            elapsed = sipp_storm(port, args.storm)
            t0 = time.perf_counter()
            s = _ask(conn, "drain")
            print(f"registration storm, SIPp as the devices: {s['registered']:,} of {args.storm:,} new devices "
                  f"registered with digest in {elapsed:.1f} s ({s['registered'] / elapsed:,.0f}/s); database caught up "
                  f"{time.perf_counter() - t0:.1f} s later; online {s['statuses'].get('online', 0):,}")
            conn.send("stop")
            proc.join(5)

    if "keepalive" in parts:
        n = args.keepalive_devices
        heartbeat = n / args.keepalive_rate
        proc, conn, port, kind = _start(gb_server, heartbeat, 3)
        r = asyncio.run(keepalives(port, n, heartbeat, args.keepalive_seconds, conn))
        offline = r["false_offline"]
        print(f"keepalive: {n:,} devices at {heartbeat:.1f} s heartbeats (= {args.keepalive_rate:,.0f}/s, the rate of "
              f"{args.keepalive_rate * 60:,.0f} devices at 60 s): server handled {r['server_per_s']:,.0f}/s for "
              f"{args.keepalive_seconds:.0f} s, answered {r['answered_per_s']:,.0f}/s; falsely offline: {offline} "
              f"(offline in all: {r['statuses'].get('offline', 0)}, devices that gave up registering: "
              f"{r['failures']}); server CPU {r['cpu_share']:.0%} of one core; registration took "
              f"{r['register_s']:.0f} s")
        conn.send("stop")
        proc.join(5)


if __name__ == "__main__":
    main()
