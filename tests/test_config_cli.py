"""Configuration precedence and the command line as an operator uses it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from anfang.cli import app
from anfang.config import NodeRole, load_settings


def test_defaults_put_sqlite_under_data_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    for k in list(os.environ):
        if k.startswith("ANFANG_"):
            monkeypatch.delenv(k)
    s = load_settings()
    assert s.role is NodeRole.city and s.database_url == "sqlite:///var/anfang.db"
    s = load_settings(data_dir=tmp_path / "d")
    assert s.database_url == f"sqlite:///{(tmp_path / 'd' / 'anfang.db').as_posix()}"


def test_toml_then_env_then_options(monkeypatch, tmp_path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('role = "county"\nnode_id = "350404"\nport = 9001\nhost = "0.0.0.0"\n', encoding="utf-8")
    monkeypatch.setenv("ANFANG_CONFIG", str(cfg))
    s = load_settings()
    assert (s.role, s.node_id, s.port, s.host) == (NodeRole.county, "350404", 9001, "0.0.0.0")
    monkeypatch.setenv("ANFANG_PORT", "9002")
    monkeypatch.setenv("ANFANG_DATABASE_URL", "postgresql://u@h/db")
    s = load_settings()
    assert s.port == 9002 and s.database_url == "postgresql://u@h/db" and s.role is NodeRole.county
    assert load_settings(port=9003).port == 9003


def test_db_upgrade_creates_schema(tmp_path) -> None:
    r = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x" / "anfang.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_healthz(tmp_path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    proc = subprocess.Popen([sys.executable, "-m", "anfang.cli", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "srv")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "no start") from None
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert Path(tmp_path / "srv" / "anfang.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)
