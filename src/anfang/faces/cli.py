"""``anfang faces ...``: enrol photos into a watchlist, match a photo, run an embedding worker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

faces_app = typer.Typer(help="人像布控 / face watchlists", no_args_is_help=True)
console = Console()

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file", envvar="ANFANG_CONFIG")]


def _service(data_dir: Path | None, config: Path | None):  # noqa: ANN202
    from anfang.cliopen import open_data
    from anfang.faces.service import FaceWatchlistService

    settings, store = open_data(data_dir, config)  # the data directory's keys: the server decrypts what we write
    return FaceWatchlistService(store, settings.data_dir)  # type: ignore[arg-type]


@faces_app.command("enrol")
def enrol_cmd(watchlist: Annotated[str, typer.Argument(help="布控库名称 / watchlist name (created if new)")],
              photos: Annotated[list[Path], typer.Argument(help="照片 / JPEG or PNG photos", exists=True,
                                                           dir_okay=False)],
              label: Annotated[str | None, typer.Option("--label", help="姓名/标签 / label (default: the file name, "
                                                        "or its folder's name for person/photo.jpg layouts)")] = None,
              threshold: Annotated[float, typer.Option(help="新建库的距离阈值 / distance threshold of a new list")]
              = 0.5,
              data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """入库：把照片中最大的人脸加入布控库 / enrol the largest face of each photo into a watchlist."""
    from anfang.faces.embedder import InvalidImageError
    from anfang.faces.service import FaceError

    svc = _service(data_dir, config)
    try:
        wl = svc.get_watchlist(watchlist)
    except FaceError:
        wl = svc.create_watchlist(watchlist, threshold=threshold)
        console.print(f"新建布控库 / created watchlist [bold]{wl.name}[/] (id {wl.id}, threshold {wl.threshold})")
    failed = 0
    for photo in photos:
        name = label or (photo.parent.name if photo.stem.lower().startswith(("img", "photo")) else photo.stem)
        try:
            entry = svc.enrol(wl.id, name, photo.read_bytes())
        except (FaceError, InvalidImageError) as exc:
            failed += 1
            console.print(f"[red]✗[/] {photo}: {exc}", soft_wrap=True)
            continue
        console.print(f"[green]✓[/] {photo} → {name} (entry {entry})")
    svc.flush()
    if failed:
        raise typer.Exit(1)


@faces_app.command("match")
def match_cmd(photo: Annotated[Path, typer.Argument(help="照片 / JPEG or PNG photo", exists=True, dir_okay=False)],
              data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """比对：照片中的人脸与所有布控库 1:N 比对 / match the faces of a photo against every watchlist."""
    from anfang.faces.embedder import InvalidImageError

    svc = _service(data_dir, config)
    try:
        matches = svc.match(photo.read_bytes())
    except InvalidImageError as exc:
        console.print(f"[red]✗[/] {photo}: {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if not matches:
        console.print("无命中 / no match")
        raise typer.Exit(1)
    for m in matches:  # one line per hit (tables wrap in narrow terminals and logs)
        box = ",".join(map(str, m.face_box)) if m.face_box else "-"
        console.print(f"命中 match: 布控库 {m.watchlist} | {m.label} | 相似度 similarity {m.similarity:.1%} | "
                      f"距离 distance {m.distance:.3f} | 人脸框 box {box} | 入库照片 {m.photo_path}",
                      soft_wrap=True, highlight=False)


@faces_app.command("list")
def list_cmd(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """布控库列表 / list the watchlists."""
    svc = _service(data_dir, config)
    table = Table("id", "名称 name", "照片 entries", "距离阈值 threshold", "最低相似度 min similarity")
    for w in svc.list_watchlists():
        table.add_row(str(w.id), w.name, str(w.entries), f"{w.threshold:.3f}", f"{w.min_similarity:.1%}")
    console.print(table)


@faces_app.command("worker")
def worker_cmd(nats_url: Annotated[str, typer.Option("--nats", help="NATS 地址 / server URL")]
               = "nats://127.0.0.1:4222",
               processes: Annotated[int, typer.Option(help="嵌入进程数 / embedding processes")] = 1) -> None:
    """嵌入工作进程：NATS 队列组 faces / embedding worker in NATS queue group `faces` (anfang.faces.embed)."""
    import asyncio
    import signal

    from anfang.faces.workers import QUEUE, SUBJECT, serve_worker

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        task = asyncio.create_task(serve_worker(nats_url, processes=processes, stop=stop, ready=ready))
        await ready.wait()
        console.print(f"faces worker: {nats_url} subject {SUBJECT} queue {QUEUE}, {processes} process(es)")
        stats = await task
        console.print(f"stopped: {stats.handled} requests, {stats.faces} faces, {stats.no_face} without a face, "
                      f"{stats.errors} errors")

    asyncio.run(run())
