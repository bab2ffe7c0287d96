"""`anfang demo` as a new user runs it (issue 19 items 7 and 10): the banner's login table shows each login's
whole jurisdiction at 80 columns, and the SIP server binds the console's host unless --sip-host says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from anfang.cli import app
from anfang.config import Settings
from anfang.gb28181.server import GbConfig


def _demo(tmp_path: Path, *extra: str) -> str:
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--scale", "0.05", "--data-dir", str(tmp_path / "d"),
                                      "--host", "127.0.0.1", "--port", "18999", *extra],
                                env={"COLUMNS": "80", "ANFANG_DATA_KEYS": ""}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def banner(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _demo(tmp_path_factory.mktemp("demo"))


def test_demo_login_table_is_not_cut_at_80_columns(banner: str) -> None:
    table = banner[banner.index("演示账号"):banner.index("控制台")]
    assert "…" not in table, table
    assert "警务区" in table.replace("\n", "").replace("│", "").replace(" ", ""), table


def test_demo_sip_binds_the_console_host_and_says_so(banner: str) -> None:
    assert "0.0.0.0" not in banner
    line = next(x for x in banner.splitlines() if "SIP" in x and "28181" in x)
    assert "127.0.0.1:" in line, line
    assert "--sip-host" in banner  # the banner tells how to bind elsewhere


def test_sip_host_follows_host_unless_set() -> None:
    assert Settings(host="10.8.0.5").sip_host == "10.8.0.5"
    assert Settings(host="10.8.0.5", sip_host="0.0.0.0").sip_host == "0.0.0.0"
    assert GbConfig.from_settings(Settings(host="127.0.0.1")).host == "127.0.0.1"
