"""``anfang federation …``: run the forwarder as its own process, show uplink state, start a three-tier demo."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

fed_app = typer.Typer(help="级联汇聚 / tiered platforms (community → county → city)", no_args_is_help=True)
console = Console()
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file", envvar="ANFANG_CONFIG")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]


def _settings(config: Path | None, data_dir: Path | None = None):  # noqa: ANN202
    from anfang.cliopen import open_settings

    return open_settings(config, data_dir=data_dir)  # the data directory's keys included


def _service(settings):  # noqa: ANN001, ANN202
    from anfang.cliopen import open_store
    from anfang.federation.links import children_of, parents_of
    from anfang.federation.service import FederationService

    return FederationService(open_store(settings), node_id=settings.node_id, role=settings.role.value,
                             parents=parents_of(settings), children=children_of(settings))


@fed_app.command("forward")
def forward(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """运行上联转发进程（与 serve 分开）/ run this node's forwarders as their own process."""
    from anfang.federation.forwarder import Forwarder, make_transport
    from anfang.viid.images import open_image_store

    settings = _settings(config, data_dir)
    svc = _service(settings)
    if not svc.parents:
        console.print("本节点未配置上级 / no federation_parents configured")
        raise typer.Exit(1)
    images = open_image_store(settings)
    nats_url = settings.federation_nats_url or settings.nats_url

    async def main() -> None:
        fwds = [Forwarder(svc, link, make_transport(link, settings.node_id, nats_url),
                          batch=settings.federation_batch, image_reader=images.get) for link in svc.parents]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        for f in fwds:
            await f.start()
        console.print(f"forwarding {settings.node_id} → {', '.join(p.node_id for p in svc.parents)}")
        await stop.wait()
        for f in fwds:
            await f.stop()

    asyncio.run(main())


@fed_app.command("status")
def status(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """上联状态与下级汇总 / uplink state and the nodes below."""
    settings = _settings(config, data_dir)
    svc = _service(settings)
    t = Table(title=f"{settings.node_id} ({settings.role.value}) 上联 / uplinks")
    for col in ("parent", "transport", "connected", "backlog", "oldest_pending", "lag_s", "sent", "last_error"):
        t.add_column(col)
    for u in svc.uplinks():
        t.add_row(*(str(u.get(c) if u.get(c) is not None else "") for c in
                    ("parent", "transport", "connected", "backlog", "oldest_pending", "lag_s", "sent", "last_error")))
    console.print(t)
    ov = svc.overview()
    t = Table(title="下级节点 / nodes below")
    for col in ("node", "via", "events", "devices", "online_rate", "warnings"):
        t.add_column(col)
    for r in ov["children"]:
        t.add_row(r["node_id"], r["via"] or "", str(r["events"]), f"{r['devices_online']}/{r['devices']}",
                  "" if r["online_rate"] is None else f"{r['online_rate']:.0%}", str(r["warnings"]))
    console.print(t)


@fed_app.command("purge")
def purge(parent: Annotated[str, typer.Argument(help="上级节点编号 / parent node id")], config: ConfigOpt = None,
          data_dir: DataDirOpt = None,
          yes: Annotated[bool, typer.Option("--yes", help="确认 / confirm")] = False) -> None:
    """丢弃欠某上级的待发数据（该上级已从配置移除时）/ drop what is still owed to a parent removed from the config."""
    settings = _settings(config, data_dir)
    svc = _service(settings)
    n, _ = svc.backlog(parent)
    if not yes:
        console.print(f"{n} records pending for {parent}; add --yes to drop them")
        raise typer.Exit(1)
    console.print(f"dropped {svc.purge_outbox(parent)} records pending for {parent}")


@fed_app.command("audit-heads")
def audit_heads(child: Annotated[str, typer.Argument(help="下级节点编号 / child node id")], config: ConfigOpt = None,
                ) -> None:
    """输出下级节点上报的审计链头（头文件格式）/ print the audit heads a child sent up, as a head file for
    `anfang audit verify --heads` at the child."""
    import json

    from anfang.federation.outbox import audit_heads_of

    settings = _settings(config)
    for line in audit_heads_of(_service(settings).store, child):
        typer.echo(json.dumps(line, separators=(",", ":")))


@fed_app.command("demo")
def demo(base_port: Annotated[int, typer.Option(help="市级端口，县级 +1，社区 +2 / city port; county +1, "
                                                     "community +2")] = 8100,
         data_dir: Annotated[Path, typer.Option(help="数据目录 / data directory")] = Path("var/federation-demo"),
         transport: Annotated[str, typer.Option(help="https | nats")] = "https",
         nats_url: Annotated[str, typer.Option(help="NATS JetStream (transport nats)")] = "nats://127.0.0.1:4222",
         direct: Annotated[bool, typer.Option("--direct", help="成条线中转：社区直连市级 / community → city")] = False,
         rate: Annotated[float, typer.Option(help="社区每秒事件数 / community events per second")] = 20.0,
         duration: Annotated[float, typer.Option(help="秒；0 为一直运行 / seconds; 0 = until Ctrl-C")] = 0.0) -> None:
    """一条命令启动三级平台演示（市、县、社区三个进程）/ start a three-tier demo: city, county, community."""
    from anfang.federation.topology import Topology

    topo = Topology(data_dir, base_port=base_port, transport=transport,
                    nats_url=nats_url if transport == "nats" else None, direct=direct)
    prepare_demo(topo)
    for name in ("city", "county", "community"):
        topo.start(name)
    try:
        topo.wait_ready()
        for name, n in topo.nodes.items():
            console.print(f"{name:9} {n.node_id:10} {n.url}/federation")
        console.print("登录 / login: admin / anfang2021 (each node)；Ctrl-C 结束 / to stop")
        sent = run_load(topo, rate=rate, duration=duration)
        backlog = wait_drained(topo)
        console.print(f"社区发出 {sent} 条消息，上联积压 {backlog} / community sent {sent} messages; backlog {backlog}")
    except KeyboardInterrupt:
        pass
    finally:
        topo.stop_all()


DEMO_DEVICES = [("demo-door-1", "小区东门门禁"), ("demo-door-2", "小区西门门禁"), ("demo-smoke-1", "3栋烟感")]


def prepare_demo(topo) -> None:  # noqa: ANN001
    """Admin login on every node, three IoT devices on the community (all of it travels up)."""
    from sqlalchemy import select

    from anfang.devices.service import DeviceService
    from anfang.federation.links import ParentLink
    from anfang.federation.service import FederationService
    from anfang.security.models import User
    from anfang.security.service import create_user
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    fresh = [Path(n.database_url.removeprefix("sqlite:///")) for n in topo.nodes.values()
             if n.database_url.startswith("sqlite:///")]
    if len(fresh) == len(topo.nodes) and not any(f.exists() for f in fresh):
        import shutil  # three new SQLite files: migrate one, copy it (each migration run costs seconds)

        upgrade(topo.nodes["city"].database_url)
        for f in fresh[1:]:
            f.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fresh[0], f)
    for name, n in topo.nodes.items():
        upgrade(n.database_url)
        store = Store(n.database_url)
        if name == "community":
            parent = topo.nodes["city" if topo.direct else "county"]
            FederationService(store, node_id=n.node_id, role="community",
                              parents=[ParentLink(node_id=parent.node_id, secret="-")]).install_outbox()
        with store.session() as s:
            if s.scalar(select(User).where(User.username == "admin")) is None:
                create_user(s, username="admin", password="anfang2021", role="city_admin", display_name="管理员")
        if name == "community":
            devices = DeviceService(store, node_id=n.node_id)
            for did, label in DEMO_DEVICES:
                if devices.get("mqtt", did) is None:
                    devices.upsert("mqtt", did, name=label, community_code="350403001001")
                    devices.set_status("mqtt", did, "online", "demo")
        store.dispose()


def run_load(topo, *, rate: float, duration: float) -> int:  # noqa: ANN001
    """Door and smoke messages to the community's HTTP IoT API at ``rate`` per second."""
    import httpx

    url = topo.nodes["community"].url
    sent, start = 0, time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as c:
        while duration <= 0 or time.monotonic() - start < duration:
            did, _ = random.choice(DEMO_DEVICES)
            if did.startswith("demo-door"):
                c.post(f"/api/iot/door/{did}", json={"method": random.choice(["face", "card", "qrcode"])})
            else:
                c.post(f"/api/iot/smoke/{did}", json={"alarm": random.random() < 0.05, "battery_percent": 90})
            sent += 1
            with contextlib.suppress(ValueError):
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return sent


def wait_drained(topo, timeout: float = 15.0) -> int:  # noqa: ANN001
    """After a timed demo: let every outbox drain before the nodes stop; returns what is left."""
    from sqlalchemy import func, select

    from anfang.federation.models import FedOutbox
    from anfang.store.engine import Store

    stores = [Store(n.database_url) for n in topo.nodes.values()]
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = 0
            for st in stores:
                with st.session() as s:
                    left += s.scalar(select(func.count()).select_from(FedOutbox)) or 0
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.2)
    finally:
        for st in stores:
            st.dispose()
