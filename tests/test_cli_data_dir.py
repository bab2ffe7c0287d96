"""Every command-line group opens a data directory the same way, its encryption keys included (issue 18, item 4):
``anfang faces enrol --data-dir D`` used to encrypt with a fresh key in ./var/keys, and the server then failed every
match with DataKeyError. Each test runs a command as a user would (a separate process, another working directory,
no key in the environment) against one data directory, then uses the result in the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.security import crypto
from anfang.store.engine import Store

SRC = Path(__file__).resolve().parents[1] / "src"
FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env["PYTHONPATH"] = str(SRC)
    env["ANFANG_MONITOR_QUIET_HOURS"] = "[0, 0]"
    return env


def anfang(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; sys.argv[0] = 'anfang'; from anfang.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data directory with its own key file and the test world, and a working directory elsewhere."""
    from world import build

    root = tmp_path_factory.mktemp("clidata")
    d, cwd = root / "data", root / "elsewhere"
    cwd.mkdir()
    r = anfang(cwd, "db", "upgrade", "--data-dir", str(d))
    assert r.returncode == 0, r.stderr
    settings = Settings(data_dir=d, data_keys=None, database_url=None)
    assert (d / "keys").exists() or any(d.rglob("*key*")), "the data directory has its own key file"
    crypto.configure_from_settings(settings)  # this process writes the world with the data directory's keys
    store = Store(settings.database_url)
    try:
        world = build(store)
        yield {"dir": d, "cwd": cwd, "settings": settings, "store": store, "world": world}
    finally:
        store.dispose()
        crypto.configure(None)  # back to the test run's keys (ANFANG_DATA_KEYS)


def _nothing_in_cwd(data) -> None:
    assert not (data["cwd"] / "var").exists(), "a command wrote ./var (a fresh key) instead of using --data-dir"


def _app(data) -> TestClient:
    crypto.configure_from_settings(data["settings"])
    return TestClient(create_app(data["settings"], data["store"]))


def test_faces_enrol_then_the_server_matches(data) -> None:
    if not (FACES / "train" / "biden").is_dir():
        pytest.skip(f"face photos not found at {FACES}")
    photo = FACES / "train" / "biden" / "biden.jpg"
    r = anfang(data["cwd"], "faces", "enrol", "在逃人员", str(photo), "--label", "拜登", "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    _nothing_in_cwd(data)
    with _app(data) as c:
        matches = c.app.state.faces.match((FACES / "train" / "biden" / "biden2.jpg").read_bytes())
        assert [m.label for m in matches][:1] == ["拜登"]  # decrypted with the data directory's key


def test_users_create_then_login_on_the_server(data) -> None:
    r = anfang(data["cwd"], "users", "create", "newcop", "police", "--password", "Cop-pass-2024",
               "--police-area-id", str(data["world"].police_area["LD-1"]), "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    _nothing_in_cwd(data)
    with _app(data) as c:
        ok = c.post("/api/auth/login", json={"username": "newcop", "password": "Cop-pass-2024"})
        assert ok.status_code == 200 and ok.json()["token"]


def test_export_decrypts_with_the_data_directory_keys(data) -> None:
    out = data["cwd"] / "persons.csv"
    r = anfang(data["cwd"], "export", "persons", str(out), "--reason", "测试", "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text(encoding="utf-8-sig")
    assert "李" in text and data["world"].id_number["li"][:6] in text
    _nothing_in_cwd(data)


@pytest.mark.parametrize("args", [
    ("keys", "status"),
    ("gb28181", "trace", "35040400001320000001", "--no-follow"),
    ("viid", "retention"),
    ("federation", "status"),
    ("construction", "circular", "{cwd}/circular.xlsx"),
    ("plates", "door-key", "DOOR-1"),
], ids=lambda a: a[0])
def test_group_opens_the_data_directory(data, args) -> None:
    argv = [a.replace("{cwd}", str(data["cwd"])) for a in args]
    r = anfang(data["cwd"], *argv, "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    _nothing_in_cwd(data)


def test_import_then_the_server_finds_the_person_and_the_audit_chain_holds(data) -> None:
    """`anfang import persons` encrypts ID numbers and writes the audit chain with the data directory's keys: the
    server finds the person by ID number, and `anfang audit verify` (rows by the commands and by the server, one
    chain) reports it intact."""
    import csv
    from datetime import date

    from sqlalchemy import select

    from anfang.core.ids import make_id_number
    from anfang.registry.models import Address
    from test_web import login

    id_number = make_id_number("350404", date(1975, 6, 1), 77)
    with data["store"].session() as s:
        code = s.scalar(select(Address.code).where(Address.id == data["world"].addr["ld-101"]))
    path = data["cwd"] / "persons_in.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["身份证号", "姓名", "现住址编码"])
        out.writerow([id_number, "郑一新", code])
    r = anfang(data["cwd"], "import", "persons", str(path), "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    _nothing_in_cwd(data)
    with _app(data) as c:
        login(c, "city")
        page = c.get("/persons", params={"id_number": id_number})
        assert page.status_code == 200 and "郑一新" in page.text  # decrypted / indexed with the same keys
    r = anfang(data["cwd"], "audit", "verify", "--data-dir", str(data["dir"]))
    assert r.returncode == 0 and "audit chain intact" in r.stdout, r.stdout + r.stderr
    r = anfang(data["cwd"], "rollups", "check", "--data-dir", str(data["dir"]))
    assert r.returncode == 0, r.stdout + r.stderr
    _nothing_in_cwd(data)
