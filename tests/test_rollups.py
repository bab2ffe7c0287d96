"""The rollups (anfang.rollups) equal a full recomputation from the raw tables after every kind of write: the real
importer's batches (inserts and upserts), edits, verification changes, deletions, addresses moving to another
community / 警务区 / grid with their residents, device status changes, capture ingest and retention, warning state
changes. And the seed's figures read from them are the figures the old scan gives, for every role."""

from __future__ import annotations

import csv
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from anfang.core.ids import make_id_number
from anfang.devices.models import Device
from anfang.devices.service import DeviceService
from anfang.gb28181.views import device_condition, list_devices
from anfang.registry import metrics
from anfang.registry.importer import import_file
from anfang.registry.models import Address, House, Person, WorkUnit
from anfang.rollups import service
from anfang.rollups.models import CaptureRollup, DeviceRollup, RegistryRollup
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.viid import days as capture_days
from anfang.viid.models import ViidObject
from anfang.viid.retention import purge
from anfang.warnings.models import Warning as WarningRow
from anfang.warnings.service import WarningService, warning_condition
from world import build

LD, XY, FX = "350404001001", "350404001201", "350405001001"
CITY = Principal.system("test")
VERIFICATION = ["已核实", "未核实", "有疑问", ""]


def assert_rollups_match(store: Store, when: str) -> None:
    diff = service.drift(store)
    assert not any(diff.values()), f"after {when}: {diff}"


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _import_addresses(store: Store, tmp_path: Path, rng: random.Random, n: int, name: str) -> list[str]:
    """n rooms under 列东社区 2栋1单元1层 and 府西社区 1栋1单元1层, random plates, 警务区 and grid codes."""
    rows, codes = [], []
    for i in range(n):
        comm, parent, area, grid = rng.choice([(LD, LD + "000201001", "LD-1", rng.choice(["G-LD-1", "G-LD-2"])),
                                               (FX, FX + "000101001", "FX-1", "G-FX-1")])
        code = f"{parent}{i + 200:03d}"
        codes.append(code)
        rows.append([code, parent, "房间", f"{i + 200}室", comm, area, grid,
                     *[rng.choice(["是", "否"]) for _ in range(3)]])
    _csv(tmp_path / name, ["code", "parent_code", "level", "name", "community_code", "police_area_code",
                           "grid_code", "plate_installed", "plate_accurate", "plate_labelled"], rows)
    report = import_file(store, "addresses", tmp_path / name, CITY)
    assert not report.errors, report.errors[:3]
    return codes


def _import_persons(store: Store, tmp_path: Path, rng: random.Random, codes: list[str], seqs: range,
                    name: str) -> None:
    rows = [[make_id_number("350404", date(1970 + s % 40, 1 + s % 12, 1 + s % 28), s), f"测试{s}", "", "", "", "",
             "", "", rng.choice(codes), rng.choice(VERIFICATION)] for s in seqs]
    _csv(tmp_path / name, ["身份证号", "姓名", "性别", "出生日期", "手机号", "户籍地址", "人口类型", "管理类别",
                           "现住址编码", "核实状态"], rows)
    report = import_file(store, "persons", tmp_path / name, CITY)
    assert not report.errors, report.errors[:3]


def _import_houses(store: Store, tmp_path: Path, rng: random.Random, codes: list[str], name: str) -> None:
    rows = [[c, "自住", rng.choice(VERIFICATION)] for c in codes]
    _csv(tmp_path / name, ["地址编码", "房屋用途", "核实状态"], rows)
    report = import_file(store, "houses", tmp_path / name, CITY)
    assert not report.errors, report.errors[:3]


def test_rollups_equal_a_full_recount_after_every_kind_of_write(store: Store, tmp_path: Path) -> None:
    rng = random.Random(20)
    w = build(store)
    assert_rollups_match(store, "the world's ORM inserts")

    # the real importer: addresses, persons (inserts), houses, then the same files changed (upserts)
    codes = _import_addresses(store, tmp_path, rng, 40, "a1.csv")
    _import_persons(store, tmp_path, rng, codes, range(100, 260), "p1.csv")
    _import_houses(store, tmp_path, rng, rng.sample(codes, 20), "h1.csv")
    assert_rollups_match(store, "importing addresses, persons and houses")
    _import_addresses(store, tmp_path, rng, 40, "a2.csv")  # same codes: new plates, some move community
    _import_persons(store, tmp_path, rng, codes, range(180, 300), "p2.csv")  # 80 updated (moved, re-verified)
    _import_houses(store, tmp_path, rng, rng.sample(codes, 25), "h2.csv")
    assert_rollups_match(store, "re-importing changed files (upserts)")

    # edits through the ORM and Core: verification, moving house, deleting
    with store.session() as s:
        persons = list(s.scalars(select(Person).order_by(Person.id)))
        ids = [a for (a,) in s.execute(select(Address.id))]
        for per in rng.sample(persons, 30):
            per.verification = rng.choice(["verified", "unverified", "disputed"])
        for per in rng.sample(persons, 20):
            per.address_id = rng.choice(ids)
        for per in rng.sample(persons, 5):
            per.address_id = None
    with store.session() as s:
        s.execute(update(House).where(House.id % 3 == 0).values(verification="verified"))
        s.execute(update(WorkUnit).values(verification="verified"))
        s.execute(update(Address).where(Address.id % 4 == 1).values(plate_labelled=True))
        doomed = [p for (p,) in s.execute(select(Person.id).where(Person.id % 7 == 0))]
        from anfang.registry.models import Residence, Vehicle
        s.execute(delete(Residence).where(Residence.person_id.in_(doomed)))
        s.execute(update(Vehicle).where(Vehicle.owner_person_id.in_(doomed)).values(owner_person_id=None))
        s.execute(update(House).where(House.owner_person_id.in_(doomed)).values(owner_person_id=None))
        s.execute(delete(Person).where(Person.id.in_(doomed)))
    assert_rollups_match(store, "edits, verification changes and deletions")

    # an address moves to another 警务区 / grid / community: its residents, house and units move cells with it
    with store.session() as s:
        s.execute(update(Address).where(Address.id == w.addr["ld-101"])
                  .values(police_area_id=w.police_area["XY-1"], grid_id=w.grid["G-XY-1"]))
        s.execute(update(Address).where(Address.id == w.addr["ld-1"])
                  .values(community_code=XY, police_area_id=None, grid_id=None))
        leaf = s.scalar(select(Address.id).where(Address.code == codes[0]))
        for model in (Person, House, WorkUnit):
            s.execute(update(model).where(model.address_id == leaf).values(address_id=w.addr["fx-101"])
                      if model is not House else delete(House).where(House.address_id == leaf))
        s.execute(delete(Address).where(Address.id == leaf))
    assert_rollups_match(store, "addresses moving and deleted")
    with store.session() as s:
        row = s.scalar(select(RegistryRollup).where(RegistryRollup.police_area_id == w.police_area["XY-1"],
                                                    RegistryRollup.community_code == LD))
        living = s.scalar(select(func.count()).select_from(Person).where(Person.address_id == w.addr["ld-101"]))
        assert living and row is not None and row.persons == living  # 101室's residents went along with it

    # devices: created, placed, status changes (service and bulk), deleted
    devices = DeviceService(store)
    for i in range(12):
        devices.upsert("gb28181", f"3504040000132000{i:04d}", community_code=rng.choice([LD, XY, FX, None]))
    devices.upsert("viid", "35040400001190000001", community_code=FX)
    for i in range(12):
        devices.set_status("gb28181", f"3504040000132000{i:04d}", rng.choice(["online", "offline"]))
    now = datetime.now(UTC)
    devices.set_status_many("gb28181", [(f"3504040000132000{i:04d}", "offline", "timeout", now) for i in range(6)])
    devices.upsert("gb28181", "35040400001320000003", community_code=FX)
    with store.session() as s:
        s.execute(delete(Device).where(Device.device_id == "35040400001320000011"))
    assert_rollups_match(store, "device writes and status changes")
    with store.session() as s:
        for who in ("city", "county", "property"):  # the /devices counts read from the rollup: the rows' counts
            p = w.users[who]
            for status in (None, "online", "offline"):
                cond = [Device.protocol == "gb28181", device_condition(p)]
                cond += [Device.status == status] if status else []
                total = s.scalar(select(func.count()).select_from(Device).where(*cond))
                online = s.scalar(select(func.count()).select_from(Device).where(*cond, Device.status == "online"))
                assert list_devices(store, p, status=status)[1:] == (total, online), (who, status)

    # captures: ingest around midnight Beijing time (16:00 UTC), retention deletes, a moved camera
    base = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    rows = [dict(kind="face", object_id=uuid.uuid4().hex, device_id=f"3504040000119000{rng.randrange(5):04d}",
                 shot_at=base + timedelta(minutes=rng.randrange(0, 180)), community_code=rng.choice([LD, FX, None]),
                 body="{}") for _ in range(150)]
    with store.session() as s:
        capture_days.ensure_days(s.connection(), [date(2026, 12, 6), date(2026, 12, 7)])  # PostgreSQL: partitions
        s.execute(insert(ViidObject), rows)
    with store.session() as s:
        s.execute(delete(ViidObject).where(ViidObject.shot_at < base + timedelta(minutes=30)))
        s.execute(update(ViidObject).where(ViidObject.device_id == "35040400001190000001").values(community_code=XY))
    assert_rollups_match(store, "capture ingest and retention")
    with store.session() as s:
        days = {d for (d,) in s.execute(select(CaptureRollup.day).where(CaptureRollup.n > 0))}
    assert days == {"2026-12-06", "2026-12-07"}  # Beijing days: 15:30-16:00 UTC on the 6th, after on the 7th
    # retention drops the Beijing 6th whole (PostgreSQL: DETACH and DROP of its partition, which no trigger sees)
    assert purge(store, None, days=1, now=datetime(2026, 12, 8, 0, tzinfo=UTC)).objects > 0
    assert_rollups_match(store, "retention dropping a day")
    with store.session() as s:
        assert {d for (d,) in s.execute(select(CaptureRollup.day).where(CaptureRollup.n > 0))} == {"2026-12-07"}

    # warnings: raised, acknowledged, handled, closed, deleted
    wrows = [dict(uid=str(uuid.uuid4()), rule="smoke.alarm", category=rng.choice(["sensor", "plate"]), title="烟感",
                  source="s",
                  dedup_key=f"k{i}", community_code=rng.choice([LD, FX, None]),
                  county_code=rng.choice(["350404", None]),
                  police_area_id=rng.choice([w.police_area["LD-1"], None]), grid_id=None,
                  created_at=base + timedelta(hours=rng.randrange(0, 30))) for i in range(40)]
    with store.session() as s:
        s.execute(insert(WarningRow), wrows)
        for st in ("acknowledged", "handled", "closed"):
            s.execute(update(WarningRow).where(WarningRow.id % 4 == ("acknowledged", "handled", "closed").index(st))
                      .values(state=st))
        s.execute(delete(WarningRow).where(WarningRow.id % 9 == 0))
    assert_rollups_match(store, "warning state changes")
    with store.session() as s:  # the warning counts by state and category (city, county) read from the rollup
        for who in ("city", "county"):
            cond = warning_condition(w.users[who])
            by_state = dict(s.execute(select(WarningRow.state, func.count()).where(cond)
                                      .group_by(WarningRow.state)).all())
            by_cat = dict(s.execute(select(WarningRow.category, func.count()).where(cond)
                                    .group_by(WarningRow.category)).all())
            stats = WarningService(store).stats(w.users[who])
            assert (stats["by_state"], stats["by_category"]) == (by_state, by_cat) and by_state, who

    # the seed's figures from the rollups are the scan's, for every role
    for who, p in w.users.items():
        for level in metrics.LEVELS:
            fast = [r.to_dict() for r in metrics.compute(store, p, level)]
            assert fast == [r.to_dict() for r in metrics.compute_from_scan(store, p, level)], (who, level)

    # a broken rollup is found, and rebuilt
    with store.session() as s:
        s.execute(update(RegistryRollup).values(persons=RegistryRollup.persons + 1))
    assert service.drift(store)["rollup_registry"]
    service.rebuild(store)
    assert_rollups_match(store, "rebuild")


def test_the_migration_fills_the_rollups_from_the_rows_already_there(db_url: str) -> None:
    from alembic import command

    from anfang.store.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(db_url), "0019d")  # a database from before the rollups, with data in it
    store = Store(db_url)
    try:
        build(store)
        upgrade(db_url)
        assert_rollups_match(store, "the upgrade")
        with store.session() as s:
            assert s.scalar(select(func.sum(RegistryRollup.persons))) == 6  # tests/world.py's six persons
    finally:
        store.dispose()


def test_rollups_check_finds_drift_and_rebuild_repairs_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from anfang.cli import app
    from anfang.clibase import open_store, settings_for

    store = open_store(settings_for(data_dir=tmp_path))
    try:
        DeviceService(store).upsert("gb28181", "35040400001320000001", community_code=LD)
        with store.session() as s:
            s.execute(update(DeviceRollup).values(n=DeviceRollup.n + 5))  # a rollup gone wrong
    finally:
        store.dispose()
    runner = CliRunner()
    broken = runner.invoke(app, ["rollups", "check", "--data-dir", str(tmp_path)])
    assert broken.exit_code == 1 and "rollups rebuild" in broken.output
    assert runner.invoke(app, ["rollups", "rebuild", "--data-dir", str(tmp_path)]).exit_code == 0
    fixed = runner.invoke(app, ["rollups", "check", "--data-dir", str(tmp_path)])
    assert fixed.exit_code == 0, fixed.output
