"""What every command-line module shares, one floor below them all: settings and store opening, the console and
tables that stay readable in an 80-column terminal. `cli.py` and each room's sub-CLI (`doorplates/cli.py`,
`security/cli.py`, `construction/cli.py`, …) import this; it imports none of them (no import cycle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Column, Table

from anfang.config import Settings, load_settings

if TYPE_CHECKING:
    from anfang.store.engine import Store

console = Console()


def settings_for(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults < TOML (`config`, else ANFANG_CONFIG / ./anfang.toml) < env < the given overrides
    (None means "not given"); the data keys of the encrypted columns are configured before any store opens."""
    if config is not None:
        os.environ["ANFANG_CONFIG"] = str(config)
    settings = load_settings(**overrides)
    from anfang.security import crypto

    crypto.configure_from_settings(settings)
    return settings


def open_store(settings: Settings) -> Store:
    """The settings' database, upgraded to the latest migration."""
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    upgrade(settings.database_url)  # type: ignore[arg-type]
    return Store(settings.database_url)  # type: ignore[arg-type]


def table(*columns: str | Column, title: str | None = None, caption: str | None = None,
          show_header: bool = True) -> Table:
    """A table for an 80-column terminal: light rules, no outer padding, and cells that wrap ("fold") instead of
    being cut with "…" — a reader may see a long id on two lines but never loses a character of it.
    A column name "中文 english" is shown on two lines (Chinese above) to keep header widths small."""
    cols = [c if isinstance(c, Column) else Column(c.replace(" ", "\n", 1), overflow="fold") for c in columns]
    return Table(*cols, title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, show_header=show_header,
                 title_justify="left")


def number(header: str) -> Column:
    """A right-aligned column of numbers or codes that is never wrapped (it is narrow)."""
    return Column(header.replace(" ", "\n", 1), justify="right", no_wrap=True)


def fixed(header: str) -> Column:
    """A column of short fixed-width values (times, ids) that is never wrapped."""
    return Column(header.replace(" ", "\n", 1), no_wrap=True)


def pairs(rows: list[tuple[str, str]], title: str | None = None) -> Table:
    """Two columns, label and value: a summary block."""
    t = table(Column("", style="bold", no_wrap=True), Column("", overflow="fold"), title=title, show_header=False)
    for k, v in rows:
        t.add_row(k, v)
    return t


__all__ = ["console", "fixed", "number", "open_store", "pairs", "settings_for", "table"]
