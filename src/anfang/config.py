"""Settings: defaults < TOML file < ANFANG_* environment variables < command-line options.

The TOML file is the one named by ANFANG_CONFIG, else ./anfang.toml when present. Keys are the field names
below (e.g. ``role = "county"``, ``database_url = "postgresql+psycopg://..."``).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class NodeRole(StrEnum):
    community = "community"
    county = "county"
    city = "city"


def _toml_path() -> Path | None:
    explicit = os.environ.get("ANFANG_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("anfang.toml")
    return local if local.exists() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANFANG_", extra="ignore")

    role: NodeRole = NodeRole.city
    node_id: str = Field(default="350400", description="this node's region code or name")
    data_dir: Path = Path("var")
    database_url: str | None = Field(default=None, description="default: sqlite file data_dir/anfang.db")
    host: str = "127.0.0.1"
    port: int = 8000
    session_hours: float = 12.0
    language: str = "zh-CN"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_db(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'anfang.db').as_posix()}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with explicit (non-None) overrides from the command line on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
