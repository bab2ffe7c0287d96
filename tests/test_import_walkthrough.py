"""docs/import-format.md's walkthrough, run as written on an empty data directory, and the command line's
tables read in an 80-column terminal (import report, siting plan; `anfang trace` in test_security_exports.py)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from openpyxl import load_workbook
from rich.cells import cell_len
from sqlalchemy import create_engine, func, select, table
from typer.testing import CliRunner

from anfang.cli import app

DOCS = Path(__file__).resolve().parent.parent / "docs"
WIDTH = 80


def walkthrough_commands() -> list[list[str]]:
    doc = (DOCS / "import-format.md").read_text(encoding="utf-8")
    section = doc.split("## 从空库开始", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the walkthrough has no command block"
    return [shlex.split(line)[1:] for line in block.group(1).splitlines() if line.startswith("anfang ")]


def test_walkthrough_says_where_the_command_is() -> None:
    """On a fresh clone `anfang` is not on the PATH: the walkthrough activates the scripts' virtualenv first."""
    doc = (DOCS / "import-format.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", doc.split("## 从空库开始", 1)[1], re.S).group(1)
    assert block.splitlines()[0] == "source .venv/bin/activate"
    root = DOCS.parent
    assert ".venv" in (root / "scripts" / "_env.sh").read_text() and 'anfang = "anfang.cli:main"' in (
        root / "pyproject.toml").read_text()


def assert_fits(output: str, width: int = WIDTH) -> None:
    """Every line the command prints fits the terminal and no cell was cut short with an ellipsis (log lines, which
    go to stderr and which CliRunner mixes in, are not the command's output)."""
    for line in output.splitlines():
        if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line):
            continue
        assert cell_len(line.rstrip()) <= width, f"wider than {width} columns: {line!r}"
        assert "…" not in line, f"a cell was cut: {line!r}"


@pytest.fixture
def empty_checkout(tmp_path, monkeypatch) -> Path:
    """A directory like the repository's root (docs/examples), with no data directory and no config."""
    shutil.copytree(DOCS / "examples", tmp_path / "docs" / "examples")
    for name in [k for k in __import__("os").environ if k.startswith("ANFANG_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_walkthrough_runs_as_written_on_an_empty_data_dir(empty_checkout) -> None:
    commands = walkthrough_commands()
    kinds = [c[1] for c in commands if c[0] == "import"]
    assert kinds == ["regions", "addresses", "persons", "houses", "units", "vehicles"]  # the documented order
    assert not (empty_checkout / "var").exists()
    runner = CliRunner()
    for args in commands:
        r = runner.invoke(app, args, env={"COLUMNS": str(WIDTH)})
        assert r.exit_code == 0, (args, r.output)
        assert_fits(r.output)
        if args[0] == "import":
            rows = sum(1 for _ in csv.reader((empty_checkout / args[2]).open(encoding="utf-8-sig"))) - 1
            # the result table: 共 新增 更新 未变 错误 — every row new, no error
            assert re.search(rf"^\s*{rows}\s+{rows}\s+0\s+0\s+0\s", r.output, re.M), r.output
    engine = create_engine(f"sqlite:///{empty_checkout / 'var' / 'anfang.db'}")
    with engine.connect() as conn:
        for kind, name in [("regions", "regions"), ("addresses", "addresses"), ("persons", "persons"),
                           ("houses", "houses"), ("units", "work_units"), ("vehicles", "vehicles")]:
            rows = sum(1 for _ in csv.reader((empty_checkout / "docs" / "examples" / f"{kind}.csv").open(
                encoding="utf-8-sig"))) - 1
            assert conn.scalar(select(func.count()).select_from(table(name))) >= rows, kind
    engine.dispose()
    export = next(c for c in commands if c[0] == "export")
    wb = load_workbook(empty_checkout / export[2])
    names = [row[1] for row in wb.active.iter_rows(min_row=2, values_only=True) if row[1]]
    assert "张伟" in names or any("张" in str(n) for n in names)
    # the same imports again: every row unchanged
    again = runner.invoke(app, ["import", "persons", "docs/examples/persons.csv"], env={"COLUMNS": str(WIDTH)})
    assert again.exit_code == 0 and re.search(r"^\s*4\s+0\s+0\s+4\s+0\s", again.output, re.M), again.output


def test_import_errors_are_listed_in_full_at_80_columns(empty_checkout) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["import", "regions", "docs/examples/regions.csv"]).exit_code == 0
    bad = empty_checkout / "bad.csv"
    bad.write_text("地址编码,上级地址编码,层级,名称,社区编码\n"
                   "350404001001,,小区/村,列东社区,350404001001\n"
                   "3504040010019999,350404009999,楼栋,99栋,\n", encoding="utf-8")
    r = runner.invoke(app, ["import", "addresses", str(bad), "--report", "bad-rows.xlsx"],
                      env={"COLUMNS": str(WIDTH)})
    assert r.exit_code == 1, r.output
    assert_fits(r.output)
    assert re.search(r"^\s*3\s+\S", r.output, re.M)  # the row number as Excel shows it
    assert "350404009999" in r.output.replace("\n", "").replace(" ", "")  # the reason, with the missing code
    assert (empty_checkout / "bad-rows.xlsx").exists()


def test_siting_tables_fit_80_columns_without_cutting_ids(tmp_path) -> None:
    from test_siting import GRID

    (tmp_path / "village.osm").write_text(GRID, encoding="utf-8")
    r = CliRunner().invoke(app, ["siting", "plan", str(tmp_path / "village.osm"), "--budget", "6", "--radius", "110",
                                 "--fov", "90", "--out", str(tmp_path / "plan.geojson")], env={"COLUMNS": str(WIDTH)})
    assert r.exit_code == 0, r.output
    assert_fits(r.output)
    doc = json.loads((tmp_path / "plan.geojson").read_text(encoding="utf-8"))
    sites = [f for f in doc["features"] if f["properties"]["role"] == "site"]
    assert len(sites) == 6
    for f in sites:
        assert f["properties"]["id"] in r.output
        assert f"{f['geometry']['coordinates'][0]:.6f}" in r.output  # the full longitude
