"""MQTT QoS 1 durability (issue 17, item 2): messages published to a private Mosquitto running the shipped
configuration (deploy/mosquitto/anfang.conf, on a free port) while `anfang serve` consumes them; the node is killed
(SIGKILL) during the stream, or kept down for an outage, then restarted. Prints published, stored and lost beside the
limit (0 lost) for each scenario.

    .venv/bin/python benchmarks/bench_mqtt.py                       # 2,000 at 1,000 msg/s with a kill; 60 s outage
    .venv/bin/python benchmarks/bench_mqtt.py --outage 60 --outage-rate 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, console, save_results

sys.path.insert(0, str(ROOT.parent / "src"))

from sqlalchemy import select  # noqa: E402

from anfang.devices.service import DeviceService  # noqa: E402
from anfang.store.engine import Store  # noqa: E402
from anfang.store.eventlog import EventRecord  # noqa: E402
from anfang.store.migrate import upgrade  # noqa: E402

CONF = ROOT.parent / "deploy" / "mosquitto" / "anfang.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_config(tmp: Path, port: int) -> Path:
    out = []
    for line in CONF.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key == "persistence_location":
            line = f"persistence_location {tmp}/"
        elif key == "allow_anonymous":
            line = "allow_anonymous true"
        elif key == "password_file":
            continue
        out.append(line)
    path = tmp / "mosquitto.conf"
    path.write_text("\n".join(out) + "\n")
    return path


class Node:
    def __init__(self, data_dir: Path, mqtt_port: int) -> None:
        self.data_dir, self.mqtt_port, self.port = data_dir, mqtt_port, free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
        env.update(ANFANG_MQTT_HOST="127.0.0.1", ANFANG_MQTT_PORT=str(self.mqtt_port), ANFANG_NODE_ID="benchmq",
                   PYTHONPATH=str(ROOT.parent / "src"))
        if os.environ.get("ANFANG_DATA_KEYS"):
            env["ANFANG_DATA_KEYS"] = os.environ["ANFANG_DATA_KEYS"]
        log = (self.data_dir / f"serve{self.starts}.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "serve",
                                      "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port",
                                      str(self.port)], cwd=self.data_dir, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def stored(store: Store, source: str) -> int:
    with store.session() as s:
        return len({r["zone"] for r in s.scalars(select(EventRecord.data).where(EventRecord.source == source))})


def wait_until(cond, timeout: float) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def publish_at(pub, source: str, n: int, rate: float, start: int = 0, on_tick=None) -> list:  # noqa: ANN001
    """Publish n QoS 1 messages at ``rate`` msg/s (in 10 ms slices); ``on_tick(i)`` after each slice."""
    infos, t0, per_slice = [], time.monotonic(), max(1, int(rate / 100))
    for i in range(start, start + n):
        infos.append(pub.publish(f"anfang/v1/perimeter/{source}", json.dumps({"zone": f"Z{i:06d}"}), qos=1))
        if (i - start + 1) % per_slice == 0:
            if on_tick is not None:
                on_tick(i - start + 1)
            ahead = t0 + (i - start + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    return infos


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--outage", type=float, default=60.0, help="seconds the node stays down (0: skip)")
    ap.add_argument("--outage-rate", type=float, default=200.0)
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        sys.exit("mosquitto not installed")
    import paho.mqtt.client as mqtt

    queue_limit = next(int(line.split()[1]) for line in CONF.read_text().splitlines()
                       if line.startswith("max_queued_messages "))
    tmp = Path(tempfile.mkdtemp(prefix="bench_mqtt_"))
    mq_port = free_port()
    broker = subprocess.Popen(["mosquitto", "-c", str(broker_config(tmp, mq_port))], stdout=subprocess.DEVNULL,
                              stderr=(tmp / "broker.log").open("w"))
    db_url = f"sqlite:///{(tmp / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    for source in ("bench-kill", "bench-outage", "bench-probe"):
        DeviceService(store).upsert("mqtt", source, name=source)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    time.sleep(0.5)
    pub.connect("127.0.0.1", mq_port)
    pub.loop_start()
    node = Node(tmp, mq_port)
    results: dict = {"queue_limit": queue_limit}
    try:
        node.start()
        ok = wait_until(lambda: (pub.publish("anfang/v1/perimeter/bench-probe", json.dumps({"zone": "p"}), qos=1)
                                 and stored(store, "bench-probe") > 0), 90)
        assert ok, "node never consumed"
        # A: the stream at --rate, SIGKILL after a third of it, restart right away
        killed = []

        def kill_once(sent: int) -> None:
            if not killed and sent >= args.messages // 3:
                node.kill()
                killed.append(time.monotonic())
                node.start()

        t0 = time.monotonic()
        infos = publish_at(pub, "bench-kill", args.messages, args.rate, on_tick=kill_once)
        for info in infos:
            info.wait_for_publish(60)
        wait_until(lambda: stored(store, "bench-kill") >= args.messages, 120)
        got = stored(store, "bench-kill")
        results["kill"] = {"published": args.messages, "rate": args.rate, "stored": got,
                           "lost": args.messages - got, "seconds": round(time.monotonic() - t0, 1)}
        console.print(f"A  {args.messages:,} QoS 1 messages at {args.rate:,.0f} msg/s, SIGKILL after "
                      f"{args.messages // 3:,}: stored {got:,}, lost {args.messages - got} (limit 0)")
        # B: the node down for --outage seconds while devices keep publishing at --outage-rate
        if args.outage > 0:
            n = int(args.outage * args.outage_rate)
            node.kill()
            infos = publish_at(pub, "bench-outage", n, args.outage_rate)
            for info in infos:
                info.wait_for_publish(60)
            node.start()
            wait_until(lambda: stored(store, "bench-outage") >= n, 300)
            got = stored(store, "bench-outage")
            results["outage"] = {"seconds": args.outage, "rate": args.outage_rate, "published": n, "stored": got,
                                 "lost": n - got}
            console.print(f"B  node down {args.outage:.0f} s, {args.outage_rate:,.0f} msg/s meanwhile ({n:,} queued "
                          f"by the broker, queue limit {queue_limit:,}): stored {got:,}, lost {n - got} (limit 0)")
    finally:
        pub.loop_stop()
        pub.disconnect()
        node.stop()
        broker.terminate()
        broker.wait(10)
        store.dispose()
    save_results("mqtt", results)


if __name__ == "__main__":
    main()
