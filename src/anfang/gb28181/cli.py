"""``anfang gb28181 simulate``: simulated devices against any GB/T 28181 server (ours or another platform)."""

from __future__ import annotations

import asyncio
import contextlib
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


@gb_app.command("unlock")
def unlock(device_id: Annotated[str | None, typer.Argument(help="设备国标编码 / device id")] = None,
           address: Annotated[str | None, typer.Option("--address", help="被锁定的来源地址 / a locked-out address")]
           = None,
           data_dir: Annotated[str | None, typer.Option("--data-dir", help="数据目录 / data directory")] = None,
           config: Annotated[str | None, typer.Option("--config", envvar="ANFANG_CONFIG")] = None) -> None:
    """解除国标设备（或地址）的密码错误锁定 / lift a GB/T 28181 lock-out of a device id (or an address)."""
    from pathlib import Path

    from anfang.cli import _settings, _store
    from anfang.security.monitoring import unlock_device

    settings = _settings(Path(config) if config else None, data_dir=Path(data_dir) if data_dir else None)
    n = unlock_device(_store(settings), None, device_id, address)
    console.print(f"已解锁 / lifted: {n}（运行中的 SIP 服务一秒内生效 / the running SIP server applies it within "
                  "a second）" if n else "没有未解除的锁定 / no open lock-out")
