"""MQTT QoS 1 messages survive a kill of the node (issue 17, item 2): a private Mosquitto with the shipped
configuration (deploy/mosquitto/anfang.conf, on a free port), `anfang serve` subscribed with its persistent session,
a burst of QoS 1 messages and SIGKILL in the middle of it; after the restart every published message is in the event
log — the PUBACK goes out only after the commit, and the broker keeps the rest for the session meanwhile."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import anfang
from anfang.devices.service import DeviceService
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecord
from anfang.store.migrate import upgrade
from conftest import _service_missing
from liveserver import free_port

ROOT = Path(__file__).resolve().parents[1]
N = 2000


def broker_config(tmp: Path, port: int) -> Path:
    """The shipped configuration, with a listener on ``port``, persistence under ``tmp`` and anonymous access."""
    text = (ROOT / "deploy" / "mosquitto" / "anfang.conf").read_text()
    out = []
    for line in text.splitlines():
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


def start_serve(data_dir: Path, port: int, mqtt_port: int, log_name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(ANFANG_DATA_KEYS=os.environ["ANFANG_DATA_KEYS"], ANFANG_MQTT_HOST="127.0.0.1",
               ANFANG_MQTT_PORT=str(mqtt_port), ANFANG_NODE_ID="mqttkill",
               PYTHONPATH=os.pathsep.join([str(Path(anfang.__file__).resolve().parents[1]),
                                           *filter(None, [os.environ.get("PYTHONPATH")])]))
    log = (data_dir / log_name).open("w")
    return subprocess.Popen([sys.executable, "-c", "from anfang.cli import app; app()", "serve", "--data-dir",
                             str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
                            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)


def stored(store: Store) -> tuple[int, int]:
    """(distinct zones, rows) of the test's perimeter alarms in the event log."""
    with store.session() as s:
        rows = [r["zone"] for r in s.scalars(select(EventRecord.data).where(EventRecord.source == "mq-kill"))]
    return len(set(rows)), len(rows)


def wait_subscribed(store: Store, publish, deadline_s: float = 60) -> None:  # noqa: ANN001
    """Publish probes until one is stored: the node is up and subscribed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        publish("probe", qos=1)
        time.sleep(0.3)
        with store.session() as s:
            if s.scalar(select(func.count()).select_from(EventRecord).where(EventRecord.source == "mq-probe")):
                return
    pytest.fail("anfang serve never consumed from the broker")


def test_qos1_burst_with_sigkill_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None:
        _service_missing("mosquitto binary not installed")
    import paho.mqtt.client as mqtt

    mq_port, http_port = free_port(), free_port()
    broker = subprocess.Popen(["mosquitto", "-c", str(broker_config(tmp_path, mq_port))],
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "broker.log").open("w"))
    db_url = f"sqlite:///{(tmp_path / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    svc = DeviceService(store)
    svc.upsert("mqtt", "mq-kill", name="周界")
    svc.upsert("mqtt", "mq-probe", name="探针")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    node = None
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                pub.connect("127.0.0.1", mq_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        pub.loop_start()

        def publish(kind: str, i: int = 0, qos: int = 1):  # noqa: ANN202
            if kind == "probe":
                return pub.publish("anfang/v1/perimeter/mq-probe", json.dumps({"zone": "p", "alarm": False}), qos=1)
            return pub.publish("anfang/v1/perimeter/mq-kill", json.dumps({"zone": f"Z{i:05d}"}), qos=qos)

        node = start_serve(tmp_path, http_port, mq_port, "serve1.log")
        wait_subscribed(store, publish)
        infos = [publish("alarm", i) for i in range(N // 2)]
        # kill while the node is in the middle of the burst: some stored, many received but not yet committed
        end = time.monotonic() + 30
        while stored(store)[0] < N // 10 and time.monotonic() < end:
            time.sleep(0.005)
        os.kill(node.pid, signal.SIGKILL)
        node.wait(10)
        infos += [publish("alarm", i) for i in range(N // 2, N)]  # the broker queues these for the session
        for info in infos:
            info.wait_for_publish(30)
        node = start_serve(tmp_path, http_port, mq_port, "serve2.log")
        end = time.monotonic() + 90
        while stored(store)[0] < N and time.monotonic() < end:
            time.sleep(0.3)
        zones, rows = stored(store)
    finally:
        pub.loop_stop()
        pub.disconnect()
        if node is not None and node.poll() is None:
            node.terminate()
            node.wait(15)
        broker.terminate()
        broker.wait(10)
        store.dispose()
    assert zones == N, f"{N - zones} of {N} QoS 1 messages lost ({rows} rows)"
