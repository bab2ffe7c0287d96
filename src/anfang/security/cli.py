"""`anfang trace FILE`: who exported a leaked file (or rows pasted from one), when, and by which request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anfang.clibase import console, pairs

STRENGTH = {"strong": "确证 strong", "medium": "较强 medium", "weak": "线索 weak"}


def trace_cmd(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                   help="XLSX、CSV、PDF、图片或粘贴了若干行的文本文件")],
              data_dir: Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")] = None,
              config: Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file",
                                                          envvar="ANFANG_CONFIG")] = None) -> None:
    """泄露溯源：指出文件的导出人、时间和请求号 / trace a leaked file to its exporter (exit 1: not traced)."""
    from anfang.clibase import open_store, settings_for
    from anfang.security import audit
    from anfang.security.scope import Principal
    from anfang.security.trace import trace_file

    store = open_store(settings_for(config, data_dir=data_dir))
    result = trace_file(store, file)
    best = result.best
    audit.record(store, Principal.system(), "trace", "export_log", [f.request_id for f in result.findings][:20],
                 f"file={file.name[:80]} found={best.username if best else ''}")
    if best is None:
        console.print(f"[red]未能溯源[/] / not traced: {file} ({result.file_type})")
        for n in result.notes:
            console.print("  " + n)
        raise typer.Exit(code=1)
    console.print(f"[bold]导出人 / exported by:[/] {best.display_name} ({best.username}, {best.role})  "
                  f"[bold]时间 / at:[/] {best.at}  [bold]请求 / request:[/] {best.request_id}  "
                  f"[{STRENGTH[best.strength]}]")
    # one block per export (label / value) rather than one wide table: readable in an 80-column terminal
    for f in result.findings:
        console.print(pairs([
            ("请求号 / request", f.request_id),
            ("导出人 / user", f"{f.display_name} ({f.username})"),
            ("时间 / time", f.at),  # labelled (core.timefmt)
            ("类别 / kind", f.kind),
            ("文件 / file", f.filename),
            ("行 / rows", str(f.rows)),
            ("证据 / evidence", "\n".join(f"[{STRENGTH[e.strength]}] {e.detail}" for e in f.evidence)),
        ]))
    if result.unknown:
        console.print("导出登记中没有的标记 / marks not in the export log: " + ", ".join(result.unknown))
    for n in result.notes:
        console.print("  " + n)
