"""`anfang rollups rebuild` / `anfang rollups check`: recompute the rollups from the raw tables, or compare them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from anfang.clibase import console, number, open_store, settings_for, table

rollups_app = typer.Typer(help="汇总表 / rollups (counts kept by triggers for the pages)", no_args_is_help=True)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file", envvar="ANFANG_CONFIG")]


@rollups_app.command("rebuild")
def rebuild_cmd(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """由原始数据重算全部汇总表（升级、修复用）/ recompute every rollup from the raw tables."""
    from anfang.rollups import ddl, service

    store = open_store(settings_for(config, data_dir=data_dir))
    try:
        service.reinstall(store)  # a table re-created since (SQLite batch migration) lost its triggers
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("重算汇总表 / rebuilding rollups", total=len(ddl.TABLES))
            written = service.rebuild(store, lambda name, n: bar.advance(task))
    finally:
        store.dispose()
    t = table("汇总表 / rollup", number("行数 / rows"), title="汇总表已重算 / rollups rebuilt")
    for name, n in written.items():
        t.add_row(name, f"{n:,}")
    console.print(t)


@rollups_app.command("check")
def check_cmd(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """核对汇总表与原始数据（不修改）/ compare every rollup with a full recomputation (read only)."""
    from anfang.rollups import service

    store = open_store(settings_for(config, data_dir=data_dir))
    try:
        diff = service.drift(store)
    finally:
        store.dispose()
    t = table("汇总表 / rollup", number("不一致单元 / cells differing"), title="汇总表核对 / rollup check")
    for name, cells in diff.items():
        t.add_row(name, f"{len(cells):,}")
    console.print(t)
    if any(diff.values()):
        console.print("[red]汇总表与原始数据不一致，请运行 anfang rollups rebuild / rollups differ: run "
                      "`anfang rollups rebuild`[/red]")
        raise typer.Exit(1)
    console.print("[green]一致 / all rollups match the raw tables[/green]")
