"""``anfang gb28181 simulate``: simulated devices against any GB/T 28181 server (ours or another platform)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

gb_app = typer.Typer(help="GB/T 28181 设备接入 / device access", no_args_is_help=True)
console = Console()


@gb_app.command("simulate")
def simulate(server: Annotated[str, typer.Option(help="SIP 服务器 host:port")] = "127.0.0.1:5060",
             count: Annotated[int, typer.Option(help="设备数 / number of devices")] = 10,
             channels: Annotated[int, typer.Option(help="每台设备通道数 / channels per device")] = 4,
             transport: Annotated[str, typer.Option(help="UDP | TCP")] = "UDP",
             password: Annotated[str, typer.Option(help="接入密码 / digest password")] = "anfang28181",
             server_id: Annotated[str, typer.Option(help="服务器国标编码 / server id")] = "35040000002000000001",
             heartbeat: Annotated[float, typer.Option(help="心跳周期（秒）/ keepalive interval")] = 60.0,
             region: Annotated[str, typer.Option(help="设备编码的行政区划 / region of device ids")] = "350402",
             first_serial: Annotated[int, typer.Option(help="起始序号 / first serial")] = 1,
             alarm_every: Annotated[float, typer.Option(help="每隔多少秒随机报警，0 不报警 / alarm period")] = 0.0,
             duration: Annotated[float, typer.Option(help="运行秒数，0 一直运行 / seconds to run")] = 0.0) -> None:
    """模拟 N 台国标设备：注册（摘要认证）、心跳、目录应答（中文名称）、报警 / simulate N devices."""
    from anfang.gb28181.simulator import Simulator

    host, _, port = server.rpartition(":")
    sim = Simulator((host or "127.0.0.1", int(port)), count=count, channels=channels, transport=transport.upper(),
                    password=password, server_id=server_id, heartbeat=heartbeat, region=region,
                    first_serial=first_serial)

    async def run() -> None:
        import random

        await sim.start(register=False)
        seconds = await sim.register_all()
        ok = sum(1 for d in sim.devices if d.registered)
        console.print(f"已注册 / registered {ok}/{count} in {seconds:.2f} s; 心跳 / keepalive every {heartbeat} s")
        loop = asyncio.get_running_loop()
        end = loop.time() + duration if duration else None
        try:
            while end is None or loop.time() < end:
                await asyncio.sleep(alarm_every or 1.0)
                if alarm_every and sim.devices:
                    with contextlib.suppress(TimeoutError, OSError):
                        await sim.alarm(random.choice(sim.devices))
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@gb_app.command("trace")
def trace(device_id: Annotated[str, typer.Argument(help="设备国标编码 / device id")],
          minutes: Annotated[float, typer.Option(help="跟踪分钟数 / minutes to record")] = 30.0,
          keep: Annotated[int, typer.Option(help="保留最近多少条 / messages kept")] = 200,
          follow: Annotated[bool, typer.Option("--follow/--no-follow",
                                               help="开始跟踪并持续显示 / start and follow; "
                                                    "--no-follow 仅显示已记录的")] = True,
          full: Annotated[bool, typer.Option("--full", help="显示完整报文 / whole messages")] = False,
          stop: Annotated[bool, typer.Option("--stop", help="停止跟踪 / stop recording")] = False,
          data_dir: Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")] = None,
          config: Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file",
                                                      envvar="ANFANG_CONFIG")] = None) -> None:
    """设备信令跟踪：记录并显示该设备最近的 SIP 消息（注册、鉴权、拒绝原因、心跳、查询）/ per-device SIP trace.

    The running SIP server records the messages (it reads the request within a few seconds); this command shows
    them, with their times in the configured zone."""
    import time as _time

    from anfang.cliopen import open_data
    from anfang.core import timefmt
    from anfang.gb28181 import trace as tr

    settings, store = open_data(data_dir, config)
    if stop:
        tr.stop_trace(store, device_id)
        console.print(f"已停止跟踪 / trace stopped: {device_id}")
        return

    def show(entries: list) -> int:  # noqa: ANN001
        last = 0
        for e in entries:
            at = timefmt.local(e.at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]  # the zone is named above the lines
            arrow = "→ 设备" if e.direction == "out" else "← 设备"
            console.print(f"{at} {arrow} {e.transport} {e.addr}  [bold]{e.summary}[/bold]", highlight=False,
                          markup=True)
            if full:
                console.print(e.text, markup=False, highlight=False)
            last = e.id
        return last

    if not follow:
        entries = tr.trace_entries(store, device_id)
        if not entries:
            console.print(f"暂无记录 / nothing recorded for {device_id}")
            return
        console.print(f"{timefmt.header('时间')} / {timefmt.header('times', 'en')}", highlight=False)
        show(entries)
        return
    until = tr.start_trace(store, device_id, minutes=minutes, keep=keep, by="cli")
    console.print(f"跟踪 / tracing {device_id} 至 / until {timefmt.fmt(until)}（下列时间同为{timefmt.zone_label()}）；"
                  "Ctrl-C 结束", highlight=False)
    last = show(tr.trace_entries(store, device_id))
    with contextlib.suppress(KeyboardInterrupt):
        while tr.trace_request(store, device_id) is not None and _time.time() < until.timestamp():
            _time.sleep(1.0)
            last = max(last, show(tr.trace_entries(store, device_id, after_id=last)))


@gb_app.command("unlock")
def unlock(device_id: Annotated[str | None, typer.Argument(help="设备国标编码 / device id")] = None,
           address: Annotated[str | None, typer.Option("--address", help="被锁定的来源地址 / a locked-out address")]
           = None,
           data_dir: Annotated[str | None, typer.Option("--data-dir", help="数据目录 / data directory")] = None,
           config: Annotated[str | None, typer.Option("--config", envvar="ANFANG_CONFIG")] = None) -> None:
    """解除国标设备（或地址）的密码错误锁定 / lift a GB/T 28181 lock-out of a device id (or an address)."""
    from pathlib import Path

    from anfang.clibase import open_store as _store
    from anfang.clibase import settings_for as _settings
    from anfang.security.monitoring import unlock_device

    settings = _settings(Path(config) if config else None, data_dir=Path(data_dir) if data_dir else None)
    n = unlock_device(_store(settings), None, device_id, address)
    console.print(f"已解锁 / lifted: {n}（运行中的 SIP 服务一秒内生效 / the running SIP server applies it within "
                  "a second）" if n else "没有未解除的锁定 / no open lock-out")
