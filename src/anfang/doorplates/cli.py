"""`anfang plates …`: printable sheets, key rotation, door access-control keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

plates_app = typer.Typer(help="门牌二维码 / QR door plates", no_args_is_help=True)
console = Console()
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]


def _service(data_dir: Path | None):  # noqa: ANN202
    from anfang.cliopen import open_settings as _settings
    from anfang.cliopen import open_store as _store
    from anfang.doorplates.service import DoorplateService
    from anfang.doorplates.tokens import load_keyring

    settings = _settings(data_dir=data_dir)
    store = _store(settings)
    svc = DoorplateService(store, load_keyring(settings.data_dir), data_dir=settings.data_dir,
                           accuracy_m=settings.plate_accuracy_m)
    return settings, svc


@plates_app.command("sheet")
def sheet(code: Annotated[str, typer.Argument(help="小区/村代码或楼栋地址编码 / community or building code")],
          out: Annotated[Path, typer.Option("--out", help="输出文件 .pdf 或 .svg / output file")],
          base_url: Annotated[str | None, typer.Option(help="二维码中的网址 / URL printed in the codes")] = None,
          data_dir: DataDirOpt = None) -> None:
    """生成可打印的门牌二维码表 / write a printable sheet of plates (PDF or SVG)."""
    from anfang.doorplates import sheets
    from anfang.security import audit
    from anfang.security.scope import Principal

    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".svg"):
        raise typer.BadParameter("输出文件须为 .pdf 或 .svg / --out must end in .pdf or .svg")
    settings, svc = _service(data_dir)
    url = base_url or settings.public_url or f"http://{settings.host}:{settings.port}"
    rows = svc.plates_under(code.strip())
    cards = sheets.cards_for(rows, url)
    heading = f"{rows[0][0]['full_name']} 门牌二维码 / door plates"
    if suffix == ".pdf":
        out.write_bytes(sheets.pdf_sheet(cards, heading))
    else:
        out.write_text(sheets.svg_sheet(cards, heading), encoding="utf-8")
    audit.record(svc.store, Principal.system(), "export", "doorplate", [rows[0][0]["id"]],
                 detail=f"sheet {code} {len(cards)} plates")
    console.print(f"已生成 {len(cards)} 块门牌 / {len(cards)} plates → {out}")


@plates_app.command("rotate-key")
def rotate_key(data_dir: DataDirOpt = None) -> None:
    """新增签名密钥并启用；已印门牌仍然有效 / add a signing key; printed plates stay valid."""
    from anfang.cliopen import open_settings as _settings
    from anfang.doorplates.tokens import ENV_KEYS, load_keyring

    settings = _settings(data_dir=data_dir)
    ring = load_keyring(settings.data_dir)
    if ring.path is None:
        raise typer.BadParameter(f"密钥来自环境变量 {ENV_KEYS}，请在那里轮换 / keys come from {ENV_KEYS}")
    kid = ring.rotate()
    console.print(f"新密钥 {kid} 已启用（共 {len(ring.keys)} 把）/ key {kid} now signs new plates")


@plates_app.command("door-key")
def door_key(door_id: Annotated[str, typer.Argument(help="门禁设备编号 / access-control device id")],
             data_dir: DataDirOpt = None) -> None:
    """门禁设备调用核验接口所用的密钥 / the key a door's access control presents."""
    _settings, svc = _service(data_dir)
    console.print(f"X-Door-Id: {door_id}\nX-Door-Key: {svc.door_key(door_id)}")


def demo_plate_hint(settings, store) -> str:  # noqa: ANN001
    """One line for the demo's output: a household plate URL in the demo grid worker's grid."""
    from sqlalchemy import select

    from anfang.doorplates.service import DoorplateService
    from anfang.doorplates.tokens import load_keyring
    from anfang.registry.models import Address
    from anfang.security.models import User

    with store.session() as s:
        grid_id = s.scalar(select(User.grid_id).where(User.username == "grid"))
        address_id = s.scalar(select(Address.id).where(Address.grid_id == grid_id, Address.level == "room")
                              .order_by(Address.id).limit(1))
    if address_id is None:
        return ""
    svc = DoorplateService(store, load_keyring(settings.data_dir), data_dir=settings.data_dir)
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return (f"门牌扫码页 / door plate (用手机打开，或以 grid/police/property 登录后打开): "
            f"{base}/p/{svc.plate_for(address_id).token}")
