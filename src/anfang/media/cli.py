"""``anfang video``: recordings from the command line, through a running anfang (its devices are registered there).

``anfang video download CHANNEL --start … --end … --out FILE`` logs in, asks for the download (a video export: the
reason and approval rules of the console apply), shows its progress with a Rich bar and saves the watermarked MP4.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

video_app = typer.Typer(help="录像 / recordings (download)", no_args_is_help=True)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[red]{message}[/]")
    raise typer.Exit(1)


@video_app.command("download")
def download(channel: Annotated[str, typer.Argument(help="通道国标编码 / channel id")],
             start: Annotated[datetime, typer.Option("--start", help="开始（ISO 时间，无时区按北京时间）")],
             end: Annotated[datetime, typer.Option("--end", help="结束 / end")],
             out: Annotated[Path, typer.Option("--out", help="保存到 / MP4 file to write")],
             reason: Annotated[str, typer.Option("--reason", help="事由 / the stated reason")],
             url: Annotated[str, typer.Option("--url", envvar="ANFANG_URL")] = "http://127.0.0.1:8000",
             user: Annotated[str, typer.Option("--user", envvar="ANFANG_USER")] = "",
             password: Annotated[str, typer.Option("--password", envvar="ANFANG_PASSWORD", prompt=True,
                                                   hide_input=True)] = "",
             speed: Annotated[int, typer.Option("--speed", help="下载倍速 / download speed 1-8")] = 4,
             approval_id: Annotated[int | None, typer.Option("--approval-id")] = None) -> None:
    """下载录像（带水印导出） / download a recording as a watermarked export."""
    import httpx

    from anfang.gb28181.manscdp.xml import CHINA_TZ

    def aware(dt: datetime) -> str:
        return (dt if dt.tzinfo else dt.replace(tzinfo=CHINA_TZ)).isoformat()

    with httpx.Client(base_url=url.rstrip("/"), timeout=30, headers={"Origin": url.rstrip("/")}) as c:
        r = c.post("/api/auth/login", json={"username": user, "password": password})
        if r.status_code != 200:
            _fail(f"登录失败 / login failed: {r.text[:200]}")
        body = {"channel_id": channel, "start": aware(start), "end": aware(end), "speed": speed, "reason": reason,
                "approval_id": approval_id}
        r = c.post("/api/video/download", json=body)
        data = r.json()
        if r.status_code == 202 and isinstance(data.get("error"), dict):
            _fail(f"已提交审批，批准后用 --approval-id 再次下载 / held for approval: {data['error']['message']}")
        if r.status_code >= 300:
            err = data.get("error")
            _fail(f"{r.status_code}: {err.get('message') if isinstance(err, dict) else r.text[:200]}")
        job = data
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("下载 / downloading", total=1.0)
            while job["state"] not in ("done", "failed"):
                time.sleep(0.5)
                job = c.get(f"/api/video/download/{job['id']}").json()
                label = {"downloading": "下载 / downloading", "watermarking": "加水印 / watermarking"}
                bar.update(task, completed=job.get("progress", 0), description=label.get(job["state"], job["state"]))
            bar.update(task, completed=1.0)
        if job["state"] != "done":
            _fail(f"下载失败 / failed: {job.get('error')}")
        with c.stream("GET", job["file"]) as resp, out.open("wb") as f:
            for chunk in resp.iter_bytes():
                f.write(chunk)
    console.print(f"已保存 / saved {out} ({out.stat().st_size} B), 导出请求号 / request {job['request_id']}")
