"""Plate tokens, the key ring, the rate limiter and the printable sheets (no database)."""

from __future__ import annotations

import json
import os

import pytest

from anfang.core.errors import ValidationError
from anfang.doorplates import sheets
from anfang.doorplates.ratelimit import RateLimiter, Rule
from anfang.doorplates.tokens import Keyring, TokenRejected, load_keyring, new_serial


def test_token_is_opaque_and_verifies(tmp_path) -> None:
    ring = load_keyring(tmp_path)
    serial = new_serial()
    token = ring.sign(serial)
    kid, part, sig = token.split(".")
    assert kid == "k1" and part == serial and len(sig) == 16
    assert ring.verify(token) == ("k1", serial)
    assert oct((tmp_path / "plate-keys.json").stat().st_mode)[-3:] == "600"
    assert new_serial() != new_serial()


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),  # signature altered
    lambda t: t.split(".")[0] + "." + new_serial() + "." + t.split(".")[2],  # serial swapped
    lambda t: "k9." + ".".join(t.split(".")[1:]),  # unknown key
    lambda t: "garbage",
    lambda t: t + ".x",
])
def test_forged_tokens_are_rejected(tmp_path, mangle) -> None:
    ring = load_keyring(tmp_path)
    with pytest.raises(TokenRejected):
        ring.verify(mangle(ring.sign(new_serial())))


def test_a_token_signed_elsewhere_is_rejected(tmp_path) -> None:
    ours, theirs = load_keyring(tmp_path / "a"), load_keyring(tmp_path / "b")
    with pytest.raises(TokenRejected) as exc:
        ours.verify(theirs.sign(new_serial()))
    assert exc.value.reason == "bad_signature"


def test_rotated_key_keeps_old_plates_valid(tmp_path) -> None:
    ring = load_keyring(tmp_path)
    old = ring.sign(new_serial())
    assert ring.rotate() == "k2"
    reloaded = load_keyring(tmp_path)  # rotation is saved to the key file
    assert reloaded.current == "k2"
    new = reloaded.sign(new_serial())
    assert new.startswith("k2.")
    assert reloaded.verify(old)[0] == "k1"
    assert reloaded.verify(new)[0] == "k2"
    data = json.loads((tmp_path / "plate-keys.json").read_text())
    del data["keys"]["k1"]  # an operator retires the old key: its plates stop working
    (tmp_path / "plate-keys.json").write_text(json.dumps(data))
    with pytest.raises(TokenRejected):
        load_keyring(tmp_path).verify(old)


def test_keys_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ANFANG_PLATE_KEYS", "b2:" + "11" * 32 + ",a1:" + "22" * 32)
    ring = load_keyring(tmp_path)
    assert ring.current == "b2" and set(ring.keys) == {"a1", "b2"}
    assert not (tmp_path / "plate-keys.json").exists()
    monkeypatch.setenv("ANFANG_PLATE_KEYS", "a1:zz")
    with pytest.raises(ValidationError):
        load_keyring(tmp_path)


def test_pass_and_plate_tokens_are_not_interchangeable(tmp_path) -> None:
    ring = load_keyring(tmp_path)
    serial = new_serial()
    with pytest.raises(TokenRejected):
        ring.verify(ring.sign(serial, purpose="pass"))
    assert ring.verify(ring.sign(serial, purpose="pass"), purpose="pass")[1] == serial


def test_keyring_rejects_short_keys() -> None:
    with pytest.raises(ValidationError):
        Keyring(keys={"k1": b"short"}, current="k1")


def test_token_bucket_per_client() -> None:
    limiter = RateLimiter({"scan": Rule(capacity=3, per_second=1)})
    assert [limiter.allow("scan", "1.1.1.1", now=0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("scan", "2.2.2.2", now=0)  # another client has its own bucket
    assert limiter.allow("scan", "1.1.1.1", now=1.0)  # one token back after one second
    assert not limiter.allow("scan", "1.1.1.1", now=1.0)


def test_token_bucket_memory_is_bounded() -> None:
    limiter = RateLimiter({"scan": Rule(capacity=1, per_second=0)}, max_clients=10)
    for i in range(100):
        limiter.allow("scan", f"10.0.0.{i}", now=0)
    assert len(limiter._buckets) == 10


def _cards() -> list[sheets.Card]:
    return [sheets.Card(url=f"http://127.0.0.1:8000/p/k1.{new_serial()}.{new_serial()}", title=f"{n}01室",
                        address=f"福建省三明市三元区列东街道列东社区1栋1单元1层{n}01室", level="room", serial=f"s{n}")
            for n in range(1, 15)]


def test_svg_sheet_has_every_plate_with_its_address() -> None:
    svg = sheets.svg_sheet(_cards(), "列东社区 门牌二维码")
    assert svg.startswith("<svg") and svg.count('class="plate"') == 14
    address = "福建省三明市三元区列东街道列东社区1栋1单元1层1401室"
    assert ">1401室<" in svg and address[:22] in svg and address[22:] in svg  # the address, on two lines
    assert "<path d=\"M" in svg


def test_pdf_sheet_embeds_a_chinese_font(monkeypatch) -> None:
    try:
        sheets.find_cjk_font()
    except sheets.FontMissing as exc:
        if os.environ.get("ANFANG_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required font unavailable under CI: {exc}")
        pytest.skip(str(exc))
    pdf = sheets.pdf_sheet(_cards(), "列东社区 门牌二维码")
    assert pdf.startswith(b"%PDF")
    assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page/") >= 2 \
        or b"/Count 2" in pdf  # 14 cards at 12 a page: two pages


def test_pdf_sheet_without_font_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(sheets.FONT_ENV, str(tmp_path / "missing.ttf"))
    with pytest.raises(sheets.FontMissing) as exc:
        sheets.pdf_sheet(_cards(), "x")
    assert "missing.ttf" in exc.value.message
    monkeypatch.delenv(sheets.FONT_ENV)
    monkeypatch.setattr("anfang.core.fonts.FONT_CANDIDATES", ())
    with pytest.raises(sheets.FontMissing) as exc:
        sheets.find_cjk_font()
    assert "fonts-wqy-microhei" in exc.value.message


def test_cli_sheet_rotate_and_demo_hint(monkeypatch, tmp_path) -> None:
    """`anfang plates sheet COMMUNITY --out FILE` on a demo database; key rotation keeps printed plates valid."""
    from sqlalchemy import select
    from typer.testing import CliRunner

    from anfang.cli import app
    from anfang.config import Settings
    from anfang.demo.generator import generate
    from anfang.doorplates.cli import demo_plate_hint
    from anfang.registry.models import Address
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    for k in ("ANFANG_PLATE_KEYS", "ANFANG_CONFIG", "ANFANG_DATABASE_URL", "ANFANG_DATA_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'anfang.db'}"
    upgrade(url)
    store = Store(url)
    try:
        generate(store, scale=0.05, seed=7)
        with store.session() as s:
            root = s.scalar(select(Address).where(Address.level == "community").order_by(Address.code).limit(1))
            n_plated = len(s.scalars(select(Address.id).where(Address.code.startswith(root.code),
                                                              Address.level != "floor")).all())
        hint = demo_plate_hint(Settings(data_dir=tmp_path, database_url=url), store)
        assert "/p/k1." in hint
    finally:
        store.dispose()
    runner = CliRunner()
    svg = tmp_path / "sheet.svg"
    r = runner.invoke(app, ["plates", "sheet", root.code, "--out", str(svg), "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert svg.read_text().count('class="plate"') == n_plated and root.name in svg.read_text()
    r = runner.invoke(app, ["plates", "sheet", root.code, "--out", str(tmp_path / "x.txt"), "--data-dir",
                            str(tmp_path)])
    assert r.exit_code != 0
    r = runner.invoke(app, ["plates", "rotate-key", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and "k2" in r.output
    ring = load_keyring(tmp_path)
    old_token = hint.rsplit("/p/", 1)[1]
    assert ring.verify(old_token)[0] == "k1"
