"""``anfang viid …`` commands: the APE simulator and a one-off retention run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="GA/T 1400 视图库 / video image database", no_args_is_help=True)
console = Console()


@app.command("simulate")
def simulate_cmd(
    url: Annotated[str, typer.Option(help="视图库地址 / base URL of the 视图库")] = "http://127.0.0.1:8000",
    apes: Annotated[int, typer.Option(help="模拟设备数 / number of APEs")] = 3,
    rate: Annotated[float, typer.Option(help="每台每秒抓拍数 / captures per second per APE")] = 1.0,
    duration: Annotated[float, typer.Option(help="运行秒数 / seconds to run")] = 30.0,
    password: Annotated[str | None, typer.Option(help="注册口令 / digest password (default: viid_password)")] = None,
    faces: Annotated[Path | None, typer.Option(help="人脸照片目录（原地读取；缺省为绘制的人脸）/ face photos, read "
                                                    "in place (default: drawn faces)")] = None,
    seed: Annotated[int, typer.Option(help="随机种子 / seed")] = 1400,
) -> None:
    """模拟采集设备上传人脸与闽G车辆 / simulated APEs posting faces and Fujian 闽G vehicles."""
    from anfang.config import load_settings
    from anfang.viid.simulator import simulate

    pw = password or load_settings().viid_password
    counts = asyncio.run(simulate(url, apes=apes, rate=rate, duration=duration, password=pw, faces_dir=faces,
                                  seed=seed, report=console.print))
    if counts["refused"]:
        raise typer.Exit(code=1)


@app.command("retention")
def retention_cmd(days: Annotated[float | None, typer.Option(help="保留天数 / keep this many days")] = None,
                  data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None) -> None:
    """立即执行一次过期清理 / run the retention job once."""
    from anfang.cliopen import open_data
    from anfang.viid.images import open_image_store
    from anfang.viid.retention import maintain, purge

    settings, store = open_data(data_dir)
    images = open_image_store(settings)
    made = maintain(store)
    result = purge(store, images, days if days is not None else settings.viid_retention_days)
    images.close()
    console.print(f"删除抓拍 {result.objects} 条（整日 {result.days_dropped} 天）、图片 {result.images} 张、内容 "
                  f"{result.blobs} 份；布控命中保留 {result.kept_for_dispositions} 条；新建分区 {len(made)} 个 / "
                  "removed, kept under open dispositions, partitions made ahead")
