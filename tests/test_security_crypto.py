"""Encryption at rest (issue 10, item 3): ID numbers, phones and face embeddings are ciphertext in the database,
found by ID number / phone through keyed hashes, imported encrypted, migrated from plaintext, and rotated to a new
key while the old one still decrypts. Every store test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text

from anfang.config import Settings
from anfang.core.ids import make_id_number
from anfang.faces.models import FaceEntry, FaceWatchlist
from anfang.registry.importer import import_file
from anfang.registry.models import House, Person
from anfang.registry.service import RegistryService
from anfang.security import crypto, keys, totp
from anfang.security.models import UserSecurity
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from world import build

CITY = Principal.system("test")


def _raw(store: Store, sql: str) -> list[tuple]:
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql))]


def test_personal_fields_are_ciphertext_and_still_searchable(store: Store) -> None:
    w = build(store)
    zhang_id, zhang_phone = w.id_number["zhang"], w.phone["zhang"]
    rows = _raw(store, "SELECT id_number, phone, id_number_hash, phone_hash FROM persons")
    assert len(rows) == 6
    for idn, phone, h, ph in rows:
        assert idn.startswith("ag1.ktest0001.") and phone.startswith("ag1.ktest0001.")
        assert len(h) == 32 and len(ph) == 32
    dump = json.dumps(rows)
    assert zhang_id not in dump and zhang_phone not in dump and zhang_id[:6] + "1980" not in dump
    owner_phones = [r[0] for r in _raw(store, "SELECT owner_phone FROM houses")]
    assert owner_phones and all(v.startswith("ag1.") for v in owner_phones)

    svc = RegistryService(store)
    police = w.users["police"]
    found = svc.search_persons(police, id_number=zhang_id.lower()).items  # the check letter in either case
    assert [p["name"] for p in found] == ["张伟"] and found[0]["id_number"] == zhang_id  # police sees it unmasked
    assert [p["name"] for p in svc.search_persons(police, phone=zhang_phone).items] == ["张伟"]
    grid = svc.search_persons(w.users["grid"], id_number=zhang_id).items
    assert grid[0]["id_number"] != zhang_id and "*" in grid[0]["id_number"]  # masking unchanged
    assert svc.search_persons(police, id_number="350404198005010000").items == []
    # queries written against the plaintext column go through the hash; ordering on ciphertext is refused
    with store.session() as s:
        assert s.scalar(select(Person.name).where(Person.id_number == zhang_id)) == "张伟"
        assert s.scalar(select(Person.name).where(Person.phone.in_([zhang_phone, "13000000000"]))) == "张伟"
    with pytest.raises(crypto.DataKeyError, match="不能用于此比较"):
        Person.id_number > zhang_id  # noqa: B015


def test_a_ciphertext_does_not_decrypt_in_another_column(store: Store) -> None:
    w = build(store)
    with store.engine.begin() as c:
        idn = c.execute(text("SELECT id_number FROM persons WHERE id = :i"), {"i": w.person["zhang"]}).scalar_one()
        c.execute(text("UPDATE persons SET phone = :v WHERE id = :i"), {"v": idn, "i": w.person["zhang"]})
    with store.session() as s, pytest.raises(crypto.DataKeyError, match="解密失败"):
        s.get(Person, w.person["zhang"]).phone  # noqa: B018


def test_face_embeddings_are_encrypted(store: Store) -> None:
    vec = np.arange(128, dtype="<f4").tobytes()
    with store.session() as s:
        wl = FaceWatchlist(name="测试布控")
        s.add(wl)
        s.flush()
        s.add(FaceEntry(watchlist_id=wl.id, label="某人", photo_path="x.jpg", photo_sha256="0" * 64, embedding=vec))
    raw = _raw(store, "SELECT embedding FROM face_entries")[0][0]
    assert bytes(raw).startswith(b"AG1") and vec not in bytes(raw)
    with store.session() as s:
        assert s.scalar(select(FaceEntry.embedding)) == vec


def _persons_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(["身份证号", "姓名", "手机号"])
        wr.writerows(rows)
    return path


def test_bulk_import_writes_ciphertext_and_reimport_is_unchanged(store: Store, tmp_path: Path) -> None:
    ids = [make_id_number("350402", date(1970 + i, 1, 1), 100 + i) for i in range(20)]
    path = _persons_csv(tmp_path / "p.csv", [[idn, f"人员{i}", f"1390000{i:04d}"] for i, idn in enumerate(ids)])
    for parallel in (False, True):  # in-process parsing, then the two parsing processes (they get the keys)
        r = import_file(store, "persons", path, CITY, parallel=parallel)
        assert r.ok, r.errors
        assert (r.inserted, r.unchanged) == ((20, 0) if not parallel else (0, 20))
    raw = _raw(store, "SELECT id_number, phone FROM persons")
    assert len(raw) == 20 and all(a.startswith("ag1.") and b.startswith("ag1.") for a, b in raw)
    assert not any(idn in json.dumps(raw) for idn in ids)
    # a changed phone updates the row and its hash
    _persons_csv(tmp_path / "p2.csv", [[ids[3], "人员3", "13911112222"]])
    r = import_file(store, "persons", tmp_path / "p2.csv", CITY)
    assert (r.updated, r.inserted) == (1, 0)
    svc = RegistryService(store)
    assert [p["name"] for p in svc.search_persons(CITY, phone="13911112222").items] == ["人员3"]
    assert svc.search_persons(CITY, phone="13900000003").items == []
    assert svc.search_persons(CITY, id_number=ids[5]).items[0]["name"] == "人员5"




def test_migration_encrypts_existing_plaintext_rows(empty_url: str) -> None:
    upgrade(empty_url, "0009")
    store = Store(empty_url)
    try:
        with store.engine.begin() as c:
            c.execute(text("INSERT INTO persons (id, id_number, name, gender, birth_date, phone, population_type, "
                           "labels, verification, updated_at) VALUES (7, '350402199001011234', '张三', 'M', "
                           "'1990-01-01', '13800000000', 'registered', '[]', 'unverified', '2026-01-01')"))
            c.execute(text("INSERT INTO face_watchlists (id, name, description, threshold, active, created_at) "
                           "VALUES (1, 'w', '', 0.5, true, '2026-01-01')"))
            c.execute(text("INSERT INTO face_entries (id, watchlist_id, label, photo_path, photo_sha256, embedding, "
                           "box, detected, created_at) VALUES (1, 1, 'x', 'p', 's', :e, '', true, '2026-01-01')"),
                      {"e": b"\x01\x02" * 256})
        store.dispose()
        upgrade(empty_url, "heads")
        store = Store(empty_url)
        idn, phone = _raw(store, "SELECT id_number, phone FROM persons")[0]
        assert idn.startswith("ag1.") and phone.startswith("ag1.")
        assert bytes(_raw(store, "SELECT embedding FROM face_entries")[0][0]).startswith(b"AG1")
        found = RegistryService(store).search_persons(CITY, id_number="350402199001011234").items
        assert [(p["id"], p["name"]) for p in found] == [(7, "张三")]
        with store.session() as s:
            assert s.get(Person, 7).phone == "13800000000"
        with store.session() as s:
            assert s.scalar(select(FaceEntry.embedding)) == b"\x01\x02" * 256
    finally:
        store.dispose()


@pytest.fixture
def file_keys(tmp_path: Path):
    """Keys from a key file (as `anfang serve` without ANFANG_DATA_KEYS), restored afterwards."""
    before = crypto._current
    settings = Settings(data_dir=tmp_path, data_keys=None)
    ring = crypto.configure_from_settings(settings)
    assert (tmp_path / "keys" / "data-keys.json").exists()  # generated on first use: a fresh install just works
    try:
        yield settings, ring
    finally:
        crypto.configure(before)


def test_rotation_reencrypts_online_and_retires_the_old_key(store: Store, file_keys) -> None:
    settings, ring = file_keys
    w = build(store)
    old = ring.primary
    police = w.users["police"].user_id
    assert police is not None
    totp_secret = totp.begin(store, police, "anfang")["secret"]  # a TOTP secret under the old key
    server = crypto.Keyring(ring.material, source=ring.source)  # another process still on the old key set
    new = keys.add_primary_key(settings)
    assert new != old and set(ring.material.keys) == {old, new}
    # while rows are mixed, both keys decrypt; the other process picks the new key up from the file
    changed = keys.reencrypt(store, batch=2, settle=0)
    assert changed >= 6 * 2 + 5  # persons' ID numbers and phones, houses' owner phones
    counts = keys.status(store)
    assert {kid for (_col, kid) in counts} == {new}
    token = _raw(store, f"SELECT id_number FROM persons WHERE id = {w.person['zhang']}")[0][0]
    assert server.decrypt_text(token, "persons.id_number") == w.id_number["zhang"]  # reloaded on unknown kid
    svc = RegistryService(store)
    assert svc.search_persons(w.users["police"], id_number=w.id_number["zhang"]).items[0]["phone"] == \
        w.phone["zhang"]
    assert keys.retire_old_keys(store, settings) == [old]
    assert set(json.loads((settings.data_dir / "keys" / "data-keys.json").read_text())["keys"]) == {new}
    with store.session() as s:  # the TOTP secret was re-encrypted too: it still reads after the old key is gone
        assert s.get(UserSecurity, police).totp_secret == totp_secret


def test_missing_key_is_a_clear_error(store: Store, file_keys) -> None:
    build(store)
    crypto.configure(crypto.Keyring(crypto.KeyMaterial.generate()))
    with store.session() as s, pytest.raises(crypto.DataKeyError, match="缺少数据密钥"):
        s.scalars(select(House.owner_phone)).all()
