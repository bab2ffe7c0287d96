"""Tiered platforms in one process: the outbox is written with the record, the forwarder pushes it to the parent's
ingest API, the parent keeps exactly one copy in per-entity order and forwards it further up; wrong schema or
credentials are refused with a clear 4xx and nothing is lost. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.events import Event, EventKind
from anfang.devices.service import DeviceService
from anfang.federation.forwarder import Forwarder
from anfang.federation.models import FedOutbox, FedRecord
from anfang.federation.schema import SCHEMA_HEADER, SchemaMismatch
from anfang.federation.service import FederationService, signed_headers
from anfang.federation.transports import HttpsTransport
from anfang.security.service import create_user
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecord, append_events

SECRET = "s3cret-node-key"


def _fresh_db(db_url: str, tmp_path, name: str) -> str:
    """A second (third) migrated database next to the fixture's one, same backend."""
    if db_url.startswith("sqlite"):  # a copy of the fixture's migrated file (cheaper than migrating again)
        import shutil

        target = tmp_path / (name + ".db")
        shutil.copy(db_url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    from sqlalchemy import create_engine, text

    base, _ = db_url.rsplit("/", 1)
    dbname = f"anfang_fed_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{base}/postgres".replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")
    src = db_url.rsplit("/", 1)[1]
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{dbname}" TEMPLATE "{src}"'))
    admin.dispose()
    _FRESH.append((base, dbname))
    return f"{base}/{dbname}"


_FRESH: list[tuple[str, str]] = []  # PostgreSQL databases made by _fresh_db, dropped after their test


@pytest.fixture(autouse=True)
def _drop_fresh_dbs() -> Iterator[None]:
    yield
    from sqlalchemy import create_engine, text

    while _FRESH:
        base, dbname = _FRESH.pop()
        admin = create_engine(f"{base}/postgres".replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()


class Tier:
    def __init__(self, url: str, tmp_path, node_id: str, role: str, parents: list[dict], children: list[dict]) -> None:
        self.settings = Settings(data_dir=tmp_path / node_id, database_url=url, node_id=node_id, role=role,
                                 federation_parents=parents, federation_children=children,
                                 federation_forwarder=False, viid_password="ape-secret")
        self.store = Store(url)
        self.app = create_app(self.settings, self.store)
        self.fed: FederationService = self.app.state.federation

    def forwarder(self, parent: Tier, **kw) -> Forwarder:  # noqa: ANN003
        link = self.fed.parents[0]

        def read_image(location: str) -> bytes:
            return self.app.state.viid.images.get(location)

        return Forwarder(self.fed, link, HttpsTransport(link, self.fed.node_id,
                                                        transport=httpx.ASGITransport(parent.app)),
                         image_reader=read_image, **kw)


@pytest.fixture
def tiers(db_url, tmp_path):  # noqa: ANN201
    """community 350403001 → county 350403 → city 350400 (属地中转), and community 350403002 → city (成条线中转)."""
    city = Tier(_fresh_db(db_url, tmp_path, "city"), tmp_path, "350400", "city", [],
                [{"node_id": "350403", "secret": SECRET, "role": "county"},
                 {"node_id": "350403002", "secret": SECRET}])
    county = Tier(_fresh_db(db_url, tmp_path, "county"), tmp_path, "350403", "county",
                  [{"node_id": "350400", "url": "http://city", "secret": SECRET}],
                  [{"node_id": "350403001", "secret": SECRET}])
    community = Tier(db_url, tmp_path, "350403001", "community",
                     [{"node_id": "350403", "url": "http://county", "secret": SECRET}], [])
    direct = Tier(_fresh_db(db_url, tmp_path, "direct"), tmp_path, "350403002", "community",
                  [{"node_id": "350400", "url": "http://city", "secret": SECRET}], [])
    yield community, county, city, direct
    for t in (community, county, city, direct):
        t.store.dispose()


def drain(fwd: Forwarder) -> int:
    async def go() -> int:
        await fwd.transport.start()
        total = 0
        while (n := await fwd.drain_once()) > 0:
            total += n
        await fwd.transport.close()
        return total

    return asyncio.run(go())


def _events(store: Store, n: int, source: str = "door-1", node: str = "350403001") -> list[str]:
    evs = [Event(kind=EventKind.person_passage, source=source, data={"i": i}, node_id=node) for i in range(n)]
    with store.session() as s:
        append_events(s, evs)
    return [e.id for e in evs]


def _event_ids(store: Store) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(EventRecord.id)))


def _outbox(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(FedOutbox))


def test_outbox_row_commits_and_rolls_back_with_the_record(tiers) -> None:
    community, *_ = tiers
    ids = _events(community.store, 3)
    assert _outbox(community.store) == 3
    with pytest.raises(RuntimeError), community.store.session() as s:
        append_events(s, [Event(kind=EventKind.alarm, source="x")])
        raise RuntimeError("crash before commit")
    assert _outbox(community.store) == 3  # the rolled-back event left no outbox row
    DeviceService(community.store, node_id="350403001").upsert("mqtt", "smoke-1", name="烟感1")
    with community.store.session() as s:
        entities = sorted(s.scalars(select(FedOutbox.entity)))
    assert entities == ["device", "event", "event", "event"]
    assert set(ids) <= _event_ids(community.store)


def test_three_tiers_deliver_exactly_once_in_order(tiers) -> None:
    community, county, city, direct = tiers
    devices = DeviceService(community.store, node_id="350403001")
    devices.upsert("mqtt", "smoke-1", name="烟感1", community_code="350403001001")
    ids = _events(community.store, 1200)
    for status in ("online", "offline", "online", "offline"):  # four changes of one device: the last must win
        devices.set_status("mqtt", "smoke-1", status, "test")
    direct_ids = _events(direct.store, 7, source="gate-9", node="350403002")

    up = community.forwarder(county, batch=500)
    assert drain(up) == 1200 + 1 + 4 + 4  # events, device insert, 4 status updates + 4 history rows
    assert _outbox(community.store) == 0
    # the county forwards what it received through its own outbox
    assert _outbox(county.store) == 1209
    assert drain(county.forwarder(city)) == 1209
    assert drain(direct.forwarder(city)) == 7

    assert _event_ids(city.store) == set(ids) | set(direct_ids)
    with city.store.session() as s:
        dev = s.scalars(select(FedRecord).where(FedRecord.entity == "device")).one()
        assert dev.origin == "350403001" and dev.data["status"] == "offline"
        assert s.scalar(select(func.count()).where(FedRecord.entity == "device_status")) == 4

    # a forwarder killed after sending but before deleting sends the same batch again: no copy appears
    more = _events(community.store, 10)
    async def resend() -> None:
        await up.transport.start()
        rows = await asyncio.to_thread(up._fetch)
        body, _ = await asyncio.to_thread(up._build, rows)
        await up.transport.send(body, "x")  # delivered, then "killed" before the delete
        await up.drain_once()  # restarted: the same rows again
        await up.transport.close()
    asyncio.run(resend())
    drain(county.forwarder(city))
    with city.store.session() as s:
        assert s.scalar(select(func.count()).select_from(EventRecord)) == 1200 + 7 + 10
    assert set(more) <= _event_ids(city.store)

    ov = city.fed.overview()
    by_node = {r["node_id"]: r for r in ov["children"]}
    assert by_node["350403"]["direct"] and by_node["350403002"]["direct"]
    assert by_node["350403001"]["via"] == "350403" and by_node["350403001"]["events"] == 1210
    assert by_node["350403001"]["devices"] == 1 and by_node["350403001"]["online_rate"] == 0.0
    groups = {g["head"]["node_id"]: g for g in ov["groups"]}  # the city's view per county, its communities summed
    assert groups["350403"]["totals"]["events"] == 1210 and groups["350403002"]["totals"]["events"] == 7


def test_an_older_version_never_overwrites_a_newer_one(tiers) -> None:
    _, county, *_ = tiers
    from anfang.federation.schema import Batch

    def batch(version: int, state: str) -> Batch:
        return Batch.model_validate({"schema": 1, "sender": "350403001", "items": [
            {"gid": f"g{version}", "origin": "350403001", "entity": "warning", "key": "7", "version": version,
             "at": "2026-01-01T00:00:00+00:00", "data": {"state": state, "severity": 1}}]})

    assert county.fed.apply(batch(20, "handled"), "350403001")["applied"] == 1
    assert county.fed.apply(batch(10, "new"), "350403001")["duplicates"] == 1  # late and older: ignored
    assert county.fed.apply(batch(20, "handled"), "350403001")["duplicates"] == 1  # the same again
    with county.store.session() as s:
        w = s.scalars(select(FedRecord).where(FedRecord.entity == "warning")).one()
        assert (w.version, w.data["state"]) == (20, "handled")
    assert _outbox(county.store) == 1  # only the applied change travels on to the city


def _post(client: TestClient, body: dict, *, schema: str = "1", secret: str = SECRET,
          node: str = "350403001") -> httpx.Response:
    raw = orjson.dumps(body)
    return client.post("/api/federation/ingest", content=raw,
                       headers={SCHEMA_HEADER: schema, **signed_headers(secret, node, raw)})


def test_wrong_schema_or_credentials_are_refused_clearly(tiers) -> None:
    community, county, *_ = tiers
    client = TestClient(county.app)
    item = {"gid": "e1", "origin": "350403001", "entity": "event", "key": "e1", "version": 1, "op": "append",
            "at": "2026-01-01T00:00:00+00:00", "data": {"kind": "alarm", "source": "d"}}
    old = _post(client, {"schema": 0, "sender": "350403001", "items": [item]}, schema="0")
    assert old.status_code == 426
    assert "upgrade 350403001" in old.json()["error"]["message"]
    new = _post(client, {"schema": 2, "sender": "350403001", "items": [item]}, schema="2")
    assert new.status_code == 426 and "upgrade 350403" in new.json()["error"]["message"]
    bad = _post(client, {"schema": 1, "sender": "350403001", "items": [item]}, secret="wrong")
    assert bad.status_code == 401
    stranger = _post(client, {"schema": 1, "sender": "999", "items": [item]}, node="999")
    assert stranger.status_code == 401
    assert _event_ids(county.store) == set()  # nothing of the refused batches was applied
    shown = {r["node_id"]: r for r in county.fed.overview()["children"]}
    assert "upgrade 350403" in shown["350403001"]["last_error"]  # the county's console shows why

    # a community whose parent speaks another schema keeps its outbox and shows why
    ids = _events(community.store, 5)
    fwd = community.forwarder(county)
    import anfang.federation.forwarder as fmod

    orig = fmod.SCHEMA
    fmod.SCHEMA = 2
    try:
        with pytest.raises(SchemaMismatch, match="upgrade 350403"):
            drain(fwd)
    finally:
        fmod.SCHEMA = orig
    assert _outbox(community.store) == 5
    assert drain(fwd) == 5 and set(ids) <= _event_ids(county.store)


def test_console_page_and_status_api(tiers) -> None:
    community, county, *_ = tiers
    with county.store.session() as s:
        create_user(s, username="cadmin", password="pw-123456", role="county_admin", county_code="350403")
    with community.store.session() as s:
        create_user(s, username="cadmin", password="pw-123456", role="county_admin", county_code="350403")
    _events(community.store, 4)
    drain(community.forwarder(county))
    _events(community.store, 2)  # still pending

    cc = TestClient(community.app)
    tok = cc.post("/api/auth/login", json={"username": "cadmin", "password": "pw-123456"}).json()["token"]
    st = cc.get("/api/federation/status", headers={"Authorization": f"Bearer {tok}"}).json()
    up = st["uplinks"][0]
    assert (up["parent"], up["backlog"]) == ("350403", 2) and up["oldest_pending"] and up["lag_s"] >= 0

    c = TestClient(county.app)
    tok = c.post("/api/auth/login", json={"username": "cadmin", "password": "pw-123456"}).json()["token"]
    c.headers["Authorization"] = f"Bearer {tok}"
    page = c.get("/federation")
    assert page.status_code == 200, page.text
    assert "级联汇聚" in page.text and "下级节点汇总" in page.text and "350403001" in page.text
    assert 'data-testid="events">4<' in page.text
    en = c.get("/federation?lang=en")
    assert "Nodes below" in en.text and "Uplinks" in en.text


def test_captures_travel_with_their_photos(tiers) -> None:
    from anfang.federation.models import FedBlob
    from anfang.viid.simulator import ape_id, face, face_list, make_jpeg

    community, county, city, _ = tiers
    ape, jpeg = ape_id(1), make_jpeg(12_000, seed=5)
    with TestClient(community.app) as c:  # the GA/T 1400 writer runs in the app's lifespan
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": ape}}),
                   headers={"Content-Type": "application/VIID+JSON"}, auth=httpx.DigestAuth(ape, "ape-secret"))
        assert r.status_code == 200, r.text
        f = face(ape, jpeg)
        r = c.post("/VIID/Faces", content=orjson.dumps(face_list([f])),
                   headers={"User-Identify": ape, "Content-Type": "application/VIID+JSON"})
        assert r.status_code == 200, r.text
        drain(community.forwarder(county))
    drain(county.forwarder(city))
    with city.store.session() as s:
        cap = s.scalars(select(FedRecord).where(FedRecord.entity == "capture")).one()
        assert cap.origin == "350403001" and cap.data["object_id"] == f["FaceID"]
        sha = cap.data["images"][0]["sha256"]
        assert s.get(FedBlob, sha).data == jpeg  # the photo itself, byte for byte, two tiers up
        ev = s.get(EventRecord, cap.key)
        assert ev is not None and ev.kind == "face_capture" and "capture" not in ev.data


def test_registry_changes_travel_sealed_and_newest_wins(tiers) -> None:
    from anfang.federation.outbox import unseal
    from anfang.registry.models import Person
    from world import build

    community, county, *_ = tiers
    build(community.store)  # 一标三实 written through the ORM, as the registry service does
    with community.store.session() as s:
        person = s.scalars(select(Person).order_by(Person.id)).first()
        pid, n_persons = person.id, s.scalar(select(func.count()).select_from(Person))
    for phone in ("13900000001", "13900000002", "13900000003"):
        with community.store.session() as s:
            s.get(Person, pid).phone = phone
    with community.store.session() as s:
        pending = " ".join(s.scalars(select(FedOutbox.envelope).where(FedOutbox.entity == "person")))
    assert "13900000003" not in pending  # personal data is not in clear in the outbox either
    drain(community.forwarder(county))
    with county.store.session() as s:
        people = s.scalars(select(FedRecord).where(FedRecord.entity == "person")).all()
        assert len(people) == n_persons
        mine = next(p for p in people if p.key == str(pid))
        assert mine.data["phone"] != "13900000003" and unseal(mine.data["phone"]) == "13900000003"
        assert unseal(mine.data["id_number"]) == person.id_number
        assert {r.entity for r in s.scalars(select(FedRecord))} >= {"address", "person", "house"}


def test_batches_stay_under_the_size_limit(tiers) -> None:
    community, county, *_ = tiers
    with community.store.session() as s:
        append_events(s, [Event(kind=EventKind.alarm, source="d", data={"note": "x" * 2000}) for _ in range(300)])
    fwd = community.forwarder(county, batch=500)
    fwd.max_bytes = 100_000
    rows = fwd._fetch()
    body, used = fwd._build(rows)
    assert 30 < used < 60 and len(body) < 100_000
    assert drain(fwd) == 300 and len(_event_ids(county.store)) == 300


def test_any_delivery_order_ends_with_the_newest_versions(tmp_path) -> None:
    """Property: whatever the order, repetition or batching of delivered changes, the receiver ends with the
    highest version of every entity and one copy of every event."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from anfang.federation.schema import Batch

    url = f"sqlite:///{tmp_path / 'prop.db'}"
    from anfang.store.migrate import upgrade

    upgrade(url)
    store = Store(url)
    svc = FederationService(store, node_id="350403", role="county")
    changes = [("warning", str(k), v) for k in range(3) for v in range(1, 5)] + [("event", f"e{i}", 1)
                                                                                 for i in range(4)]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(changes), min_size=1, max_size=40), st.integers(1, 7))
    def check(seq, size) -> None:  # noqa: ANN001
        origin = f"o{uuid.uuid4().hex[:10]}"  # a fresh origin per example: no state carried over
        for i in range(0, len(seq), size):
            items = [{"gid": f"{origin}-{en}-{k}-{v}", "origin": origin, "entity": en, "key": f"{origin}{k}",
                      "version": v, "op": "append" if en == "event" else "upsert", "at": "2026-01-01T00:00:00+00:00",
                      "data": {"kind": "alarm", "source": "s", "v": v, "node_id": origin}}
                     for en, k, v in seq[i:i + size]]
            svc.apply(Batch.model_validate({"schema": 1, "sender": origin, "items": items}), origin)
        newest: dict[str, int] = {}
        for en, k, v in seq:
            if en == "warning":
                newest[f"{origin}{k}"] = max(v, newest.get(f"{origin}{k}", 0))
        with store.session() as s:
            got = {r.key: (r.version, r.data["v"]) for r in s.scalars(select(FedRecord).where(
                FedRecord.origin == origin))}
            events = s.scalars(select(EventRecord.id).where(EventRecord.node_id == origin)).all()
        assert got == {k: (v, v) for k, v in newest.items()}
        assert sorted(events) == sorted({f"{origin}{k}" for en, k, _ in seq if en == "event"})

    try:
        check()
    finally:
        store.dispose()


def _persons_csv(path, rows: list[tuple[str, str, str]]):  # noqa: ANN001, ANN202
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["身份证号", "姓名", "手机号"])
        w.writerows(rows)
    return path


def _person_records(store: Store) -> dict[str, FedRecord]:
    with store.session() as s:
        return {r.key: r for r in s.scalars(select(FedRecord).where(FedRecord.entity == "person"))}


def test_bulk_imported_persons_travel_once_and_reimport_adds_nothing(tiers, tmp_path) -> None:
    from datetime import date

    from anfang.core.ids import make_id_number
    from anfang.federation.outbox import unseal
    from anfang.registry.importer import import_file
    from anfang.registry.models import Person
    from anfang.security.scope import Principal

    community, county, city, _ = tiers
    who = Principal.system("test")
    rows = [(make_id_number("350403", date(1960 + i % 40, 1 + i % 12, 1 + i % 28), i), f"人员{i}",
             f"1390000{i:04d}") for i in range(1, 41)]
    path = _persons_csv(tmp_path / "persons.csv", rows)
    r = import_file(community.store, "persons", path, who)
    assert (r.inserted, r.errors) == (40, [])
    with community.store.session() as s:  # written in the import's transactions, one change per person
        pending = s.scalars(select(FedOutbox.envelope).where(FedOutbox.entity == "person")).all()
        ids = {p.id_number: p.id for p in s.scalars(select(Person))}
    assert len(pending) == 40 and "13900000001" not in " ".join(pending)  # phones and ID numbers sealed
    assert drain(community.forwarder(county)) == 40
    assert drain(county.forwarder(city)) == 40
    at_city = _person_records(city.store)
    assert set(at_city) == {str(i) for i in ids.values()} and {r.origin for r in at_city.values()} == {"350403001"}
    for idn, name, phone in rows:
        rec = at_city[str(ids[idn])]
        assert (unseal(rec.data["id_number"]), rec.data["name"], unseal(rec.data["phone"])) == (idn, name, phone)
    versions = {k: r.version for k, r in at_city.items()}

    # the same file again: every row unchanged, nothing owed, nothing new or older upstairs
    r = import_file(community.store, "persons", path, who)
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 40)
    assert _outbox(community.store) == 0
    assert drain(community.forwarder(county)) == 0
    assert {k: r.version for k, r in _person_records(city.store).items()} == versions

    # one changed row: one newer change, and it wins at the city
    changed = [rows[0][:2] + ("13911112222",), *rows[1:]]
    r = import_file(community.store, "persons", _persons_csv(tmp_path / "changed.csv", changed), who)
    assert (r.inserted, r.updated, r.unchanged) == (0, 1, 39)
    assert drain(community.forwarder(county)) == 1 and drain(county.forwarder(city)) == 1
    at_city = _person_records(city.store)
    first = at_city[str(ids[rows[0][0]])]
    assert len(at_city) == 40 and first.version > versions[first.key]
    assert unseal(first.data["phone"]) == "13911112222"

    # the payload is the ORM hook's: same fields, same sealed ones
    with community.store.session() as s:
        s.get(Person, ids[rows[1][0]]).name = "改名"
    with community.store.session() as s:
        orm = orjson.loads(s.scalars(select(FedOutbox.envelope)).one())
    assert set(orm["data"]) == set(first.data) and sorted(orm["sealed"]) == ["id_number", "phone"]

    # a node without a parent pays nothing: no outbox rows
    r = import_file(city.store, "persons", path, who)
    assert r.inserted == 40 and _outbox(city.store) == 0
