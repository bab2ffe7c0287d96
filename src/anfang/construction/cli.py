"""``anfang construction …``: the monthly circular (XLSX / PDF), an acceptance report, a 六无 incident import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

construction_app = typer.Typer(help="建设运维 / construction, acceptance, supervision", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]
Config = Annotated[Path | None, typer.Option("--config", help="配置文件 / TOML config")]


def _open(config: Path | None, data_dir: Path | None):  # noqa: ANN202
    from anfang.cliopen import open_settings as _settings
    from anfang.cliopen import open_store as _store

    settings = _settings(config, data_dir=data_dir)
    return settings, _store(settings)


@construction_app.command("circular")
def circular_cmd(out: Annotated[Path, typer.Argument(help="输出文件 .xlsx 或 .pdf / output file")],
                 year: Annotated[int | None, typer.Option(help="年 / year")] = None,
                 month: Annotated[int | None, typer.Option(min=1, max=12, help="月 / month")] = None,
                 data_dir: DataDir = None, config: Config = None) -> None:
    """月度督导通报（XLSX 或带图表的 PDF）/ the monthly circular."""
    from anfang.construction import report_pdf, rollout, supervision

    settings, store = _open(config, data_dir)
    now = datetime.now(UTC)
    year, month = year or now.year, month or now.month
    plan, notes = supervision.plan_for(settings.data_dir, year)
    day = min(now, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) - timedelta(seconds=1))
    standings = supervision.rank_counties(plan, supervision.measure_progress(store, day), month)
    if out.suffix.lower() == ".pdf":
        early = rollout.early_target(store) if year == rollout.load_rollout_rules().early_by.year else None
        data = report_pdf.circular_pdf(standings, year, month, notes,
                                       supervision.load_supervision_rules().lagging_share_of_pro_rata, early)
    else:
        data = supervision.circular_xlsx(standings, year, month, notes)
    out.write_bytes(data)
    typer.echo(f"{out} ({len(data)} bytes); " + "；".join(notes))


@construction_app.command("acceptance-report")
def acceptance_cmd(community: Annotated[str, typer.Argument(help="社区（小区）代码 / community code")],
                   out: Annotated[Path, typer.Argument(help="输出 PDF / output PDF")],
                   data_dir: DataDir = None, config: Config = None) -> None:
    """验收报告（PDF）/ the acceptance report of one community."""
    from anfang.construction.report_pdf import acceptance_pdf
    from anfang.construction.service import acceptance_facts
    from anfang.security.scope import Principal

    _, store = _open(config, data_dir)
    facts = acceptance_facts(store, Principal.system(), community)
    out.write_bytes(acceptance_pdf(facts))
    st = facts["stability"]
    typer.echo(f"{out}: 连续稳定 {st['stable_days']}/{st['required_days']} 天，"
               f"{'可以' if st['eligible'] else '尚不能'}申请验收；类型 {facts['tier']['tier_label']}")


@construction_app.command("liuwu-import")
def liuwu_import_cmd(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV / XLSX")],
                     operator: Annotated[str, typer.Option(help="操作人 / operator")] = "cli",
                     data_dir: DataDir = None, config: Config = None) -> None:
    """导入六无案事件表（小区代码, 类别, 日期, 起数, 说明）/ import 六无 incidents."""
    from anfang.construction.liuwu import import_table

    _, store = _open(config, data_dir)
    typer.echo(f"导入 {import_table(store, file.read_bytes(), file.name, operator)} 行 / rows imported")
