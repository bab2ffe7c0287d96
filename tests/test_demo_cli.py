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
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("demo")
    return base / "d", _demo(base)


@pytest.fixture(scope="module")
def banner(demo_dir: tuple[Path, str]) -> str:
    return demo_dir[1]


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


def test_demo_grids_have_this_months_patrols(demo_dir: tuple[Path, str]) -> None:
    """/doorplates' patrol coverage of the demo is not all 0 % (issue 19 item 7): grid workers have checked in at
    part of their patrol points this month, some grids more than others."""
    from sqlalchemy import select

    from anfang.doorplates.service import DoorplateService
    from anfang.doorplates.tokens import load_keyring
    from anfang.security.models import User
    from anfang.security.service import principal_of
    from anfang.store.engine import Store

    data_dir = demo_dir[0]
    store = Store(f"sqlite:///{(data_dir / 'anfang.db').as_posix()}")
    try:
        with store.session() as s:
            city = principal_of(s.scalar(select(User).where(User.username == "city")))
        rows = DoorplateService(store, load_keyring(data_dir), data_dir=data_dir).coverage(city)
    finally:
        store.dispose()
    rates = [r["rate"] for r in rows if r["rate"] is not None]
    assert rates and sum(1 for r in rates if r > 0) >= len(rates) / 2, rates
    assert len(set(rates)) > 1 and max(rates) <= 1, rates
    assert all(r["checkins"] >= r["covered"] for r in rows)
