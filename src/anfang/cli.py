"""The `anfang` command line (Typer + Rich)."""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from anfang.clibase import console, number, open_store, settings_for, table
from anfang.config import Settings
from anfang.doorplates.cli import plates_app as _plates_app
from anfang.registry.columns import KINDS
from anfang.security.roles import Role

app = typer.Typer(help="anfang 智慧安防小区 / 居安工程 平台 — smart-security community platform.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="数据库 / database", no_args_is_help=True)
audit_app = typer.Typer(help="审计日志 / audit log", no_args_is_help=True)
users_app = typer.Typer(help="用户 / users", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
from anfang.gb28181.cli import gb_app as _gb_app  # noqa: E402

app.add_typer(_gb_app, name="gb28181")
app.add_typer(_plates_app, name="plates")
from anfang.faces.cli import faces_app  # noqa: E402 - light: the face libraries load inside its commands

app.add_typer(faces_app, name="faces")
from anfang.siting.cli import siting_app  # noqa: E402 - light: numpy/scipy/highspy load inside its command

app.add_typer(siting_app, name="siting")
from anfang.security.cli import trace_cmd  # noqa: E402 - light: the trace code loads inside the command

app.command("trace")(trace_cmd)  # 泄露溯源 (docs/security.md)
from anfang.federation.cli import fed_app  # noqa: E402 - light: transports load inside its commands

app.add_typer(fed_app, name="federation")
from anfang.construction.cli import construction_app  # noqa: E402 - light: reports load inside its commands

app.add_typer(construction_app, name="construction")
from anfang.media.cli import video_app  # noqa: E402 - light: talks to a running anfang over HTTP

app.add_typer(video_app, name="video")
from anfang.rollups.cli import rollups_app  # noqa: E402 - light: the rollup code loads inside its commands

app.add_typer(rollups_app, name="rollups")

HostOpt = Annotated[str | None, typer.Option("--host", help="监听地址 / listen address")]
PortOpt = Annotated[int | None, typer.Option("--port", help="监听端口 / listen port")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]
SipPortOpt = Annotated[int | None, typer.Option("--sip-port", help="GB/T 28181 SIP 端口 / SIP port (UDP+TCP)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file", envvar="ANFANG_CONFIG")]


# the kinds of bulk import / export, in docs/import-format.md's order (区划 → 地址 → 人员 → 房屋 → 单位 → 车辆)
Kind = StrEnum("Kind", {k: k for k in KINDS})


_settings = settings_for  # the names the commands below use
_store = open_store


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _serve(settings: Settings, store) -> None:  # noqa: ANN001
    import uvicorn

    from anfang.app import create_app

    tls: dict = {}
    if settings.tls_certfile:  # HTTPS (and mTLS with tls_client_ca) for the ingest API of a county / city
        import ssl

        tls = {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile or "") or None}
        if settings.tls_client_ca:
            tls.update(ssl_ca_certs=str(settings.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    readers = None
    if settings.read_workers > 0:  # read-only reader processes on read_port (anfang.readers, docs/architecture.md)
        from anfang.readers import Readers

        readers = Readers(settings, tls).start()
    try:
        # no permessage-deflate: video does not compress, and zlib on every fragment costs 5x the relaying itself
        uvicorn.run(create_app(settings, store), host=settings.host, port=settings.port, log_level="warning",
                    ws_per_message_deflate=False, **tls)
    finally:
        if readers is not None:
            readers.stop()


@app.command("media")
def media_cmd(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None,
              config: ConfigOpt = None,
              nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS：向控制台通告本节点 / "
                                                                               "announce this node")] = None,
              public_url: Annotated[str | None, typer.Option("--public-url", help="浏览器访问本节点的地址 / "
                                                                                   "URL browsers reach")] = None,
              rtp_ip: Annotated[str | None, typer.Option("--rtp-ip", help="设备发送媒体的目的地址 / "
                                                                           "address devices send RTP to")] = None,
              ) -> None:
    """流媒体节点（横向扩展）/ a media node alone (scale-out): RTP in, live video out; see docs/video.md."""
    import uvicorn

    from anfang.media.views import media_app

    settings = _settings(config, host=host, port=port, data_dir=data_dir, media_nats_url=nats_url,
                         media_public_url=public_url, media_rtp_ip=rtp_ip)
    if not (settings.media_nats_url or settings.nats_url):
        console.print("[yellow]未配置 NATS：控制台无法发现本节点 / no nats_url: the console cannot find this node[/]")
    console.print(f"流媒体节点 / media node: http://{settings.host}:{settings.port}/healthz")
    uvicorn.run(media_app(settings), host=settings.host, port=settings.port, log_level="warning",
                ws_per_message_deflate=False)  # video does not compress (see _serve)


@app.command()
def demo(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None,
         scale: Annotated[float, typer.Option(help="数据规模 / data scale (1 ≈ a few thousand residents)")] = 1.0,
         seed: Annotated[int, typer.Option(help="随机种子 / generator seed")] = 2021,
         serve: Annotated[bool, typer.Option("--serve/--no-serve", help="生成后启动服务 / start the server")] = True,
         sip_port: SipPortOpt = None,
         sip_host: Annotated[str | None, typer.Option(
             "--sip-host", help="SIP 绑定地址，默认同 --host / SIP bind address (default: the HTTP host)")] = None,
         ) -> None:
    """演示：新建数据库、生成三明市演示数据、启动服务 / fresh demo database, demo data, server."""
    from anfang.demo.generator import generate

    data_dir = data_dir or Path("var/demo")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    settings = _settings(host=host, port=port, data_dir=data_dir,
                         database_url=f"sqlite:///{(data_dir / 'anfang.db').as_posix()}",
                         # GB/T 28181: SIP server with a few simulated devices going on and offline
                         sip_enabled=True, sip_port=sip_port, sip_host=sip_host, sip_simulate=6,
                         sip_heartbeat_interval=10.0,
                         demo_scenario_pace=20.0)  # demo/scenario.py: each kind of warning in the first minutes
    store = _store(settings)
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = generate(store, scale=scale, seed=seed, progress=progress)
        from anfang.construction.demo import seed_demo

        seed_demo(store, seed=seed)  # 建设运维: devices per tier, specs, status history, captures
        from anfang.demo.patrols import seed_patrols

        seed_patrols(store, seed=seed)  # this month's grid patrols (door-plate hub: coverage per grid)
    console.print(f"[bold]演示数据 / demo data[/]: {summary.counties} 县区, {summary.towns} 乡镇街道, "
                  f"{summary.communities} 社区/村, {summary.addresses} 地址, {summary.houses} 房屋, "
                  f"{summary.persons} 人员, {summary.units} 单位, {summary.vehicles} 车辆")
    table = Table(title="演示账号 / demo logins")
    for col in ("用户名 username", "密码 password", "角色 role", "辖区 jurisdiction"):
        table.add_column(col, overflow="fold")  # wrap, never cut: the officer's 警务区 is the longest cell
    for login in summary.logins:
        table.add_row(login.username, login.password, login.display_name, login.scope)
    console.print(table)
    url = f"http://{settings.host}:{settings.port}/"
    from anfang.doorplates.cli import demo_plate_hint

    console.print(demo_plate_hint(settings, store), soft_wrap=True)
    console.print(f"控制台 / console: [bold cyan]{url}[/]   API: {url}docs   (Ctrl+C 退出 / to stop)")
    bind = "与控制台同一地址 / the console's host" if settings.sip_host == settings.host else "--sip-host"
    console.print(f"GB/T 28181 SIP: {settings.sip_host}:{settings.sip_port} (UDP+TCP, {bind}; "
                  f"其他地址用 / bind elsewhere with --sip-host), 服务器编码 / server id "
                  f"{settings.sip_server_id}, 接入密码 / password {settings.sip_password}; {url}devices")
    console.print(f"监控中心 / video wall: {url}video/wall ; 周界报警联动视频 / perimeter alarm with linked video: "
                  f"curl -X POST {url}api/iot/perimeter/perimeter-demo-01 -H 'content-type: application/json' "
                  """-d '{"zone": "东侧围墙", "alarm": true, "type": "intrusion"}'""", soft_wrap=True)
    settings.viid_simulate = 4  # GA/T 1400: simulated APEs posting faces and 闽G vehicles ({url}viid/captures)
    _demo_watchlists(settings, store, url)
    if serve:
        _serve(settings, store)


def _demo_watchlists(settings: Settings, store, url: str) -> None:  # noqa: ANN001
    """Demo early warning: the face and plate watchlists of demo/scenario.py, whose story raises a face hit, a plate
    hit, a perimeter intrusion, a smoke alarm and a forced door in the demo officer's 警务区 in the first minutes."""
    from anfang.demo.scenario import seed_watchlists

    for line in seed_watchlists(store, settings.data_dir):
        console.print(line, soft_wrap=True)
    console.print(f"民警终端 / police terminal: {url}m/warnings （演示预警约 {settings.demo_scenario_pace * 5:.0f} 秒内"
                  f"依次到达 / the demo's warnings arrive within the first minutes）")


@app.command("serve")
def serve_cmd(host: HostOpt = None, port: PortOpt = None, data_dir: DataDirOpt = None,
              config: ConfigOpt = None, sip_port: SipPortOpt = None,
              certfile: Annotated[Path | None, typer.Option("--certfile", help="TLS 证书 / certificate (PEM)")] = None,
              keyfile: Annotated[Path | None, typer.Option("--keyfile", help="TLS 私钥 / private key (PEM)")] = None,
              read_workers: Annotated[int | None, typer.Option(
                  "--read-workers", min=0, max=64,
                  help="只读进程数 / read-only reader processes (GET routes only)")] = None,
              read_port: Annotated[int | None, typer.Option(
                  "--read-port", help="只读进程端口，默认 --port + 1 / the readers' port (default port + 1)")] = None,
              ) -> None:
    """启动服务（升级数据库后）/ run the server (after upgrading the database); HTTPS with --certfile/--keyfile."""
    settings = _settings(config, host=host, port=port, data_dir=data_dir, sip_port=sip_port,
                         sip_enabled=True if sip_port else None, tls_certfile=certfile, tls_keyfile=keyfile,
                         read_workers=read_workers, read_port=read_port)
    store = _store(settings)
    scheme = "https" if settings.tls_certfile else "http"
    console.print(f"anfang {settings.role.value} node {settings.node_id}: {scheme}://{settings.host}:{settings.port}/")
    if settings.read_workers > 0:
        from anfang.readers import read_port as _read_port

        console.print(f"只读进程 / readers: {settings.read_workers} × {scheme}://{settings.host}:"
                      f"{_read_port(settings)}/ (GET/HEAD; 写操作 / writes → :{settings.port})")
    _serve(settings, store)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """升级数据库结构到最新 / apply all migrations."""
    from anfang.store.migrate import current, upgrade

    settings = _settings(config, data_dir=data_dir)
    upgrade(settings.database_url)  # type: ignore[arg-type]
    console.print(f"数据库已升级 / database at revision {current(settings.database_url)}")  # type: ignore[arg-type]


@app.command("import")
def import_cmd(kind: Annotated[Kind, typer.Argument(help="数据类别 / kind")],
               file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV 或 XLSX 文件")],
               report: Annotated[Path | None, typer.Option(help="错误报告输出 / write the bad rows here")] = None,
               operator: Annotated[str, typer.Option(help="操作人（记入审计）/ operator name")] = "cli",
               data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """批量导入（CSV/XLSX），逐行报告 / bulk import with a row-level report."""
    from anfang.registry.importer import import_file
    from anfang.security.scope import Principal

    settings = _settings(config, data_dir=data_dir)
    store = _store(settings)
    with _progress() as bar:
        task = bar.add_task(f"导入 {kind.value}", total=None)
        result = import_file(store, kind.value, file, Principal.system(operator),
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    summary = table(number("共 rows"), number("新增 inserted"), number("更新 updated"), number("未变 unchanged"),
                    number("错误 errors"), number("用时 seconds"), title=f"导入 / import {kind.value}: {file.name}")
    summary.add_row(str(result.total), str(result.inserted), str(result.updated), str(result.unchanged),
                    str(len(result.errors)), f"{result.seconds:.1f}")
    console.print(summary)
    if result.errors:
        errors = table(number("行号 row"), "错误原因 reason", title="错误行 / rejected rows",
                       caption=f"另有 {len(result.errors) - 20} 行错误 / {len(result.errors) - 20} more rows "
                               "(--report)" if len(result.errors) > 20 else None)
        for err in result.errors[:20]:
            errors.add_row(str(err.row), err.reason)
        console.print(errors)
    if report is not None and result.errors:
        result.write_report(report)
        console.print(f"错误报告已写入 / report written: {report}")
    if result.errors:
        raise typer.Exit(code=1)


@app.command("export")
def export_cmd(kind: Annotated[Kind, typer.Argument(help="数据类别 / kind")],
               file: Annotated[Path, typer.Argument(help="输出 XLSX 文件（.csv 则为 CSV）")],
               operator: Annotated[str, typer.Option(help="操作人（记入审计）/ operator name")] = "cli",
               reason: Annotated[str | None, typer.Option(help="导出事由（记入导出登记）/ reason")] = None,
               data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """导出为 XLSX 或 CSV（带导出水印）/ export to XLSX or CSV, watermarked (docs/security.md)."""
    from anfang.registry.exporter import export_csv, export_xlsx
    from anfang.security.scope import Principal
    from anfang.security.watermark import new_mark

    settings = _settings(config, data_dir=data_dir)
    store = _store(settings)
    principal = Principal.system(operator)
    fmt = "csv" if file.suffix.lower() == ".csv" else "xlsx"
    mark = new_mark(store, principal, kind.value, fmt, file.name, reason=reason)
    with _progress() as bar:
        task = bar.add_task(f"导出 {kind.value}", total=None)
        n = (export_csv if fmt == "csv" else export_xlsx)(
            store, kind.value, file, principal, mark=mark,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"已导出 {n} 行到 {file}（请求号 {mark.request_id}）")


@audit_app.command("verify")
def audit_verify(data_dir: DataDirOpt = None, config: ConfigOpt = None,
                 heads: Annotated[Path | None, typer.Option(
                     "--heads", help="头文件：检查记录过的链头仍在链中 / head file: check every anchored head")] = None,
                 ) -> None:
    """校验审计日志哈希链（带密钥）/ verify the keyed audit chain (and anchored heads); exit 1 if broken."""
    from anfang.security.audit import verify

    settings = _settings(config, data_dir=data_dir)
    result = verify(_store(settings), heads=heads)
    keys_used = ", ".join(f"{k}: {n}" for k, n in sorted(result.keys.items())) or "-"
    console.print(f"审计链 / audit chain: {result.checked} 条 rows (无密钥旧记录 / unkeyed legacy: {result.legacy}; "
                  f"密钥 / keys: {keys_used}; 头记录 / anchored heads checked: {result.anchors})")
    # the full head hash, to be logged elsewhere (the head file, a ticket, the parent node)
    console.print(f"head #{result.head_seq} {result.head_hash}", soft_wrap=True)
    if result.ok:
        console.print("[green]审计链完整[/] / audit chain intact")
        return
    console.print(f"[red]审计链被破坏[/] / audit chain BROKEN ({len(result.problems)} problems):")
    for line in result.problems[:50]:
        console.print("  " + line, soft_wrap=True)
    raise typer.Exit(code=1)


@audit_app.command("anchor")
def audit_anchor(data_dir: DataDirOpt = None, config: ConfigOpt = None,
                 heads: Annotated[Path | None, typer.Option("--heads", help="头文件 / head file")] = None) -> None:
    """把当前链头追加到头文件 / append the chain's head to the head file now (the server does it every few minutes)."""
    from anfang.security.audit import anchor_head

    settings = _settings(config, data_dir=data_dir)
    path = heads or settings.audit_heads_file or settings.data_dir / "audit-heads.jsonl"
    seq = anchor_head(_store(settings), path, settings.node_id)
    console.print(f"head #{seq} → {path}" if seq else f"链头未变 / head unchanged ({path})")


@audit_app.command("rotate-key")
def audit_rotate_key(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """新的审计密钥（旧密钥保留用于校验）/ a new audit-chain key in the key file; old rows stay verifiable."""
    from anfang.security import crypto, keys

    settings = _settings(config, data_dir=data_dir)
    crypto.configure_from_settings(settings)
    console.print(f"审计主密钥 / audit primary key: {keys.add_audit_key(settings)}")


@users_app.command("create")
def users_create(username: str, role: Role,
                 password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
                 display_name: str | None = None, county_code: str | None = None, community_code: str | None = None,
                 police_area_id: int | None = None, grid_id: int | None = None, person_id: int | None = None,
                 data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """新建用户 / create a user (roles: city_admin county_admin police grid_worker property_staff resident)."""
    from anfang.security.service import create_user

    settings = _settings(config, data_dir=data_dir)
    with _store(settings).session() as s:
        user = create_user(s, username=username, password=password, role=role, display_name=display_name,
                           county_code=county_code, community_code=community_code, police_area_id=police_area_id,
                           grid_id=grid_id, person_id=person_id)
        console.print(f"已创建用户 / created user {user.username} ({user.role})")


@users_app.command("unlock")
def users_unlock(username: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """解除登录锁定 / lift a failed-login lockout."""
    from anfang.security.monitoring import unlock_user

    settings = _settings(config, data_dir=data_dir)
    unlock_user(_store(settings), None, username)
    console.print(f"已解锁 / unlocked {username}")


keys_app = typer.Typer(help="数据加密密钥 / data encryption keys (docs/security.md)", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def keys_status(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """各密钥加密的行数 / rows per key id (\"\" = plaintext not yet encrypted)."""
    from anfang.security import keys

    settings = _settings(config, data_dir=data_dir)
    counts = keys.status(_store(settings))
    table = Table("列 / column", "密钥 / key", "行 / rows")
    for (column, kid), n in sorted(counts.items()):
        table.add_row(column, kid or "明文 / plaintext", str(n))
    console.print(table)
    console.print(f"主密钥 / primary key: {keys.crypto.keyring().primary}")


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDirOpt = None, config: ConfigOpt = None,
                batch: Annotated[int, typer.Option(help="每批行数 / rows per batch")] = 1000,
                new_key: Annotated[bool, typer.Option("--new-key/--reencrypt-only",
                                                      help="先生成新主密钥 / add a new primary key first")] = True,
                retire: Annotated[bool, typer.Option("--retire/--keep-old",
                                                     help="完成后删除旧密钥 / drop old keys when done")] = False,
                ) -> None:
    """轮换密钥：新主密钥 + 分批重新加密（服务不停）/ rotate: new primary key, re-encrypt in batches online."""
    from anfang.security import keys

    settings = _settings(config, data_dir=data_dir)
    store = _store(settings)
    if new_key:
        kid = keys.add_primary_key(settings)
        console.print(f"新主密钥 / new primary key {kid} (旧密钥仍可解密 / old keys still decrypt)")
    with _progress() as bar:
        task = bar.add_task("重新加密 / re-encrypting", total=None)
        done = keys.reencrypt(store, batch=batch, progress=lambda n: bar.update(task, advance=n))
    console.print(f"已重新加密 / re-encrypted {done} 个值 / values")
    if retire:
        gone = keys.retire_old_keys(store, settings)
        console.print(f"已删除旧密钥 / retired keys: {', '.join(gone) or '—'}")


def _add_viid() -> None:
    from anfang.viid.commands import app as viid_app

    app.add_typer(viid_app, name="viid")


_add_viid()


def main() -> None:
    """Entry point: domain errors are printed as their message (zh-CN / English), not as a traceback."""
    from anfang.core.errors import AnfangError

    try:
        app()
    except AnfangError as exc:
        console.print(f"[red]错误 / error[/]: {exc.message}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
