"""Encryption at rest in the door-plate room (issue 10, item 3): the ID numbers and phones residents declare and the
contact phones of tip-offs are AES-GCM ciphertext in the database (a declaration's ID number found by its keyed
hash), while the scan pages and lists still show them, masked by role as before; migration
0015_doorplates_encryption encrypts existing rows and decrypts them again on downgrade. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from anfang.core.errors import Conflict
from anfang.core.ids import make_id_number
from anfang.doorplates.models import Declaration, TipOff
from anfang.doorplates.service import DoorplateService
from anfang.doorplates.tokens import load_keyring as load_plate_keys
from anfang.registry.service import RegistryService
from anfang.security import crypto, keys
from anfang.security.masking import mask_id_number, mask_phone
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.store.migrate import alembic_config, upgrade
from test_doorplates import declare, env, fresh, plate_path  # noqa: F401 - env is the shared fixture
from test_security_crypto import file_keys  # noqa: F401 - fixture
from test_web import csrf, text_of
from world import build

NEW_ID = make_id_number("350404", date(1996, 3, 4), 55)
NEW_PHONE = "13805981234"
TIP_PHONE = "13905987654"


def _raw(store: Store, sql: str) -> list[tuple]:
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql))]


def test_declaration_and_tipoff_are_ciphertext_in_the_table(env) -> None:  # noqa: F811
    c, w, svc, store = env
    path = plate_path(svc, w, "ld-102")
    r = declare(fresh(c, None), path, id_number=NEW_ID, phone=NEW_PHONE)
    assert r.status_code == 303
    anon = fresh(c, None)
    page = anon.get(plate_path(svc, w, "ld-1"))
    r = anon.post(plate_path(svc, w, "ld-1") + "/report",
                  data={"csrf_token": csrf(page.text), "kind": "tip", "text": "可疑人员", "contact": TIP_PHONE},
                  follow_redirects=False)
    assert r.status_code == 303

    # the raw rows: no plaintext ID number or phone anywhere, ciphertext under the current key, the keyed hash
    rows = _raw(store, "SELECT * FROM plate_declarations")
    dump = json.dumps([[str(v) for v in row] for row in rows], ensure_ascii=False)
    for secret in (NEW_ID, NEW_PHONE, NEW_ID[6:14]):
        assert secret not in dump, secret
    (idn, phone, hashed), = _raw(store, "SELECT id_number, phone, id_number_hash FROM plate_declarations")
    ring = crypto.keyring()
    assert idn.startswith(f"ag1.{ring.primary}.") and phone.startswith(f"ag1.{ring.primary}.")
    assert hashed == crypto.blind_id_number(NEW_ID) and len(hashed) == 32
    (contact,), = _raw(store, "SELECT contact FROM plate_tipoffs")
    assert contact.startswith("ag1.")
    assert TIP_PHONE not in json.dumps(_raw(store, "SELECT * FROM plate_tipoffs"), default=str)
    with pytest.raises(crypto.DataKeyError):  # bound to its column: copied elsewhere it does not decrypt
        ring.decrypt_text(phone, "plate_tipoffs.contact")

    # ... and the application still shows them, masked by role as before
    officer = text_of(fresh(c, "police").get(path).text)
    assert NEW_ID in officer and NEW_PHONE in officer
    grid = text_of(fresh(c, "grid").get(path).text)
    assert mask_id_number(NEW_ID) in grid and NEW_ID not in grid and NEW_PHONE in grid
    [pending] = svc.pending_declarations(w.users["county"])
    assert (pending["id_number"], pending["phone"]) == (mask_id_number(NEW_ID), mask_phone(NEW_PHONE))
    assert [t["phone"] for t in svc.tipoffs(w.users["grid"])] == [TIP_PHONE]
    assert [t["phone"] for t in svc.tipoffs(w.users["county"])] == [mask_phone(TIP_PHONE)]
    with store.session() as s:
        d = s.scalar(select(Declaration))
        assert (d.id_number, d.phone) == (NEW_ID, NEW_PHONE)
        assert s.scalar(select(TipOff.contact)) == TIP_PHONE


def test_pending_duplicate_is_found_by_keyed_hash_and_review_uses_the_plaintext(env) -> None:  # noqa: F811
    _c, w, svc, store = env
    token = svc.plate_for(w.addr["ld-102"]).token
    anon = Principal.anonymous()
    decl = svc.declare(anon, token, name="赵新", id_number=NEW_ID, phone=NEW_PHONE, relation="tenant", move_in=None)
    with pytest.raises(Conflict):  # the duplicate check probes the hash column, not the ciphertext
        svc.declare(anon, token, name="赵新", id_number=NEW_ID.lower(), phone=None, relation="tenant", move_in=None)
    out = svc.review(w.users["grid"], decl, True)
    assert out["status"] == "verified"
    [person] = RegistryService(store).search_persons(w.users["police"], id_number=NEW_ID).items
    assert (person["id"], person["phone"]) == (out["person_ids"][0], NEW_PHONE)  # copied over decrypted


def test_key_status_and_rotation_cover_the_door_plate_columns(
        store: Store, file_keys, tmp_path: Path) -> None:  # noqa: F811
    settings, ring = file_keys  # keys from a key file (the app would install ANFANG_DATA_KEYS: no app here)
    w = build(store)
    svc = DoorplateService(store, load_plate_keys(tmp_path / "plates"), data_dir=tmp_path)
    token = svc.plate_for(w.addr["ld-102"]).token
    decl = svc.declare(Principal.anonymous(), token, name="赵新", id_number=NEW_ID, phone=NEW_PHONE,
                       relation="tenant", move_in=None)
    old = ring.primary
    counts = keys.status(store)
    assert counts[("plate_declarations.id_number", old)] == counts[("plate_declarations.phone", old)] == 1
    new = keys.add_primary_key(settings)
    keys.reencrypt(store, batch=3, settle=0)
    assert {kid for (_col, kid), n in keys.status(store).items() if n} == {new}
    assert keys.retire_old_keys(store, settings) == [old]
    [pending] = svc.pending_declarations(w.users["police"])  # still decrypts, still found by its hash
    assert (pending["id"], pending["id_number"], pending["phone"]) == (decl, NEW_ID, NEW_PHONE)
    with pytest.raises(Conflict):
        svc.declare(Principal.anonymous(), token, name="赵新", id_number=NEW_ID, phone=None, relation="tenant",
                    move_in=None)




def _seed_plaintext(store: Store) -> None:
    """Door-plate rows as written before 0015: plaintext ID numbers and phones."""
    addr = build(store).addr["ld-102"]
    with store.engine.begin() as c:
        for i in range(1, 4):
            c.execute(text("INSERT INTO plate_declarations (id, address_id, kind, name, id_number, phone, status, "
                           "created_at) VALUES (:i, :a, 'new', '赵新', :idn, :ph, 'pending', '2026-01-01')"),
                      {"i": i, "idn": make_id_number("350404", date(1990, 1, i), i), "ph": f"1380598000{i}", "a": addr})
        c.execute(text("INSERT INTO plate_declarations (id, address_id, kind, status, created_at) "
                       "VALUES (9, :a, 'confirm', 'pending', '2026-01-01')"), {"a": addr})
        c.execute(text("INSERT INTO plate_tipoffs (id, ticket, address_id, kind, text, contact, status, created_at) "
                       "VALUES (1, 'abc', :a, 'tip', 't', '13905980001', 'open', '2026-01-01'), "
                       "(2, 'abd', :a, 'tip', 't', NULL, 'open', '2026-01-01')"), {"a": addr})


def test_migration_encrypts_existing_rows_and_downgrades(empty_url: str) -> None:
    upgrade(empty_url, "0014")
    store = Store(empty_url)
    try:
        _seed_plaintext(store)
        plain_ids = [make_id_number("350404", date(1990, 1, i), i) for i in range(1, 4)]
        store.dispose()
        upgrade(empty_url, "0015_doorplates_encryption")
        rows = _raw(store, "SELECT id, id_number, phone, id_number_hash FROM plate_declarations ORDER BY id")
        assert [r[0] for r in rows] == [1, 2, 3, 9]
        for (_i, idn, phone, hashed), plain in zip(rows[:3], plain_ids, strict=True):
            assert idn.startswith("ag1.") and phone.startswith("ag1.") and hashed == crypto.blind_id_number(plain)
        assert rows[3][1:] == (None, None, None)
        assert not any(p in json.dumps(rows, default=str) for p in plain_ids + ["13805980001"])
        assert [r[0][:4] if r[0] else r[0] for r in _raw(store, "SELECT contact FROM plate_tipoffs ORDER BY id")] \
            == ["ag1.", None]
        with store.session() as s:
            assert s.scalar(select(Declaration.name).where(Declaration.id_number == plain_ids[1].lower())) == "赵新"
            assert [d.phone for d in s.scalars(select(Declaration).order_by(Declaration.id))] == \
                ["13805980001", "13805980002", "13805980003", None]
            assert s.scalar(select(TipOff.contact).where(TipOff.id == 1)) == "13905980001"

        command.downgrade(alembic_config(empty_url), "0014")
        rows = _raw(store, "SELECT id_number, phone FROM plate_declarations ORDER BY id")
        assert rows == [(plain_ids[i], f"1380598000{i + 1}") for i in range(3)] + [(None, None)]
        assert _raw(store, "SELECT contact FROM plate_tipoffs ORDER BY id") == [("13905980001",), (None,)]
        with store.engine.connect() as c:
            cols = {col["name"] for col in inspect(c).get_columns("plate_declarations")}
        assert "id_number_hash" not in cols
        upgrade(empty_url, "heads")  # and up again
        assert _raw(store, "SELECT id_number FROM plate_declarations WHERE id = 1")[0][0].startswith("ag1.")
    finally:
        store.dispose()
