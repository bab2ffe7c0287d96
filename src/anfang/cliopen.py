"""One way for every command-line command to open a data directory: the settings (defaults < TOML < ``ANFANG_*``
environment < the command's options), then **the data directory's own encryption keys** (before anything reads or
writes an encrypted column: without them a command would encrypt with a freshly generated key in ``./var/keys``
that the server cannot read), then the migrated store.

Every ``anfang`` sub-command that touches a data directory uses :func:`open_settings` / :func:`open_store`
(tests/test_cli_data_dir.py runs one command of each group against a data directory and uses the result in the
server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from anfang.config import Settings
    from anfang.store.engine import Store

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="数据目录 / data directory")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML 配置文件 / config file", envvar="ANFANG_CONFIG")]


def open_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings with ``overrides`` (None values are ignored), and the data keys of the encrypted columns installed."""
    from anfang.clibase import settings_for

    return settings_for(config, **overrides)  # the data directory's keys, never a fresh ./var/keys


def open_store(settings: Settings) -> Store:
    """The store of ``settings``, migrated to the current schema."""
    from anfang.clibase import open_store as _open

    return _open(settings)


def open_data(data_dir: Path | None = None, config: Path | None = None, **overrides: Any) -> tuple[Settings, Store]:
    settings = open_settings(config, data_dir=data_dir, **overrides)
    return settings, open_store(settings)
