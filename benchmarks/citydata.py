"""City-scale data set (issue 20, item 1): Sanming at its real volume, in a database kept for bench_pages.py.

    .venv/bin/python benchmarks/citydata.py --db sqlite --scale 0.01        # a small set in seconds (developing)
    .venv/bin/python benchmarks/citydata.py --db sqlite                      # the full set (scale 1)
    .venv/bin/python benchmarks/citydata.py --db postgresql                  # PostgreSQL database anfang_city[_S]

Scale 1: 2.5 M persons and the 1.3 M standard addresses they live at, one 实有房屋 per room (1 M), one work unit
per 40 rooms (25 k) — all four through the real importer (anfang.registry.importer.import_file) from the CSV files
of datagen.py (houses and units files written here); one 派出所 per county and one 警务区 per town (every address of
the town in it); 25,000 devices (19,000 GB/T 28181: 18,000 IPCs with one channel and 1,000 NVRs with 16; 6,000
GA/T 1400 capture APEs) with a month of status history; GA/T 1400 captures, time-compressed: ``--captures-per-day``
rows for each of ``--days`` days written straight into viid_objects (what the ingest path would store, without
images); events (event_log) and warnings in proportion (their states spread over new / dispatched / handled /
closed); the logins city admin ``city``, county admin ``county`` (三元区) and officer ``police`` (a 警务区 with
data), password ``anfang2021``.

Everything is deterministic (fixed seeds, every timestamp derived from DAY0). The data keys are in
benchmarks/out/city_<tag>/keys (bench_pages.py serves with the same settings). Prints rows/s for every stage, and
for the captures the rows per day reached and the time a day at the city rate would take.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import datagen
from common import OUT, PG_URL, console, reset_database, save_results
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import make_url

from anfang.config import Settings
from anfang.core.ids import make_credit_code
from anfang.core.regions import COUNTIES
from anfang.devices.models import Channel, Device, DeviceStatusChange
from anfang.registry.importer import import_file
from anfang.registry.models import Address, PoliceArea, PoliceStation
from anfang.security import crypto
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.service import create_user
from anfang.store.engine import Store
from anfang.store.eventlog import EventRecord
from anfang.store.migrate import upgrade
from anfang.viid.models import ViidObject
from anfang.warnings.models import Warning

PASSWORD = "anfang2021"
COUNTY = "350404"  # 三元区: the county admin's county
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)  # first day of the month of history; the month runs DAY0 .. DAY0 + days
FULL = {"persons": 2_500_000, "devices": 25_000, "captures_per_day": 100_000, "events": 1_000_000,
        "warnings": 100_000}
BATCH = 10_000


def tag_of(scale: float) -> str:
    return "full" if scale == 1 else f"s{scale:g}".replace(".", "_")


def settings_for(db: str, scale: float, pg_url: str = PG_URL, pg_db: str | None = None) -> Settings:
    """Settings of the data set: its database (PostgreSQL: ``pg_db`` when given, a copy) and its data directory."""
    tag = tag_of(scale)
    data_dir = OUT / f"city_{tag}"
    if db == "sqlite":
        url = f"sqlite:///{OUT / f'city_{tag}.db'}"
    else:
        # --pg-db, or ANFANG_CITY_PG_DB: a copy (CREATE DATABASE x TEMPLATE anfang_city), never the original
        name = pg_db or os.environ.get("ANFANG_CITY_PG_DB") or ("anfang_city" if scale == 1 else f"anfang_city_{tag}")
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    return Settings(data_dir=data_dir, database_url=url, metrics_allow=["127.0.0.1", "testclient"])


def bulk(store: Store, model: type, rows: list[dict]) -> None:
    """Insert rows in one transaction: COPY on PostgreSQL (what a bulk loader would use; executemany there is
    several times slower), executemany on SQLite. JSON columns are given as dicts."""
    if not rows:
        return
    if store.engine.dialect.name != "postgresql":
        with store.session() as s:
            s.execute(insert(model), rows)
            s.commit()
        return
    table = model.__table__
    cols = list(rows[0])
    json_cols = {c for c in cols if table.c[c].type.__class__.__name__ == "JSON"}
    raw = store.engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row([json.dumps(r[c]) if c in json_cols else r[c] for c in cols])
        raw.commit()
    finally:
        raw.close()


class Timer:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def stage(self, name: str, n: int, seconds: float) -> None:
        rate = n / seconds if seconds > 0 else 0.0
        self.rows.append({"stage": name, "rows": n, "seconds": round(seconds, 1), "rows_per_s": round(rate)})
        console.print(f"  {name}: {n:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)")


def write_houses(path: Path, room_codes: list[str], rnd: random.Random) -> int:
    uses = ["自住", "自住", "自住", "出租", "空置", "经营"]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["地址编码", "房屋用途", "产权人姓名", "建筑面积", "核实状态"])
        for code in room_codes:
            w.writerow([code, uses[rnd.randrange(len(uses))], "", f"{rnd.randrange(45, 160)}",
                        "已核实" if rnd.random() < 0.7 else "未核实"])
    return len(room_codes)


def write_units(path: Path, room_codes: list[str], every: int, rnd: random.Random) -> int:
    kinds = ["企业", "商铺", "个体工商户", "学校", "医疗机构", "餐饮"]
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["统一社会信用代码", "单位名称", "单位类型", "地址编码", "从业人数", "核实状态"])
        for i, code in enumerate(room_codes[::every]):
            kind = kinds[rnd.randrange(len(kinds))]
            w.writerow([make_credit_code(code[:6], f"{i:09d}"), f"三明{kind}{i}号", kind, code,
                        rnd.randrange(1, 200), "已核实" if rnd.random() < 0.8 else "未核实"])
            n += 1
    return n


def registry(store: Store, scale: float, timer: Timer, start: str = "regions") -> None:
    persons = max(1000, int(FULL["persons"] * scale))
    files = datagen.generate(persons)
    hp, up = OUT / f"houses_{persons}.csv", OUT / f"units_{persons}.csv"
    if not hp.exists() or not up.exists():  # written once (another run may be reading them), then reused
        rooms = _room_codes(files.addresses)
        rnd = random.Random(11)
        write_houses(hp.with_suffix(".tmp"), rooms, rnd)
        write_units(up.with_suffix(".tmp"), rooms, 40, rnd)
        hp.with_suffix(".tmp").replace(hp)
        up.with_suffix(".tmp").replace(up)
    principal = Principal.system("citydata")
    steps = [("regions", files.regions), ("addresses", files.addresses), ("persons", files.persons),
             ("houses", hp), ("units", up)]
    for kind, path in steps[[k for k, _ in steps].index(start):]:
        t = time.perf_counter()
        report = import_file(store, kind, path, principal)
        if report.errors:
            console.print(f"[red]{kind}: {len(report.errors)} errors, first {report.errors[:3]}")
        timer.stage(f"import {kind}", report.total, time.perf_counter() - t)


def _room_codes(addresses: Path) -> list[str]:
    with addresses.open(encoding="utf-8") as f:
        return [row[0] for row in csv.reader(f) if row[2:3] == ["房间"]]


def police(store: Store, timer: Timer) -> dict[str, int]:
    """One 派出所 per county, one 警务区 per town; every address of the town in its 警务区. Returns town -> area."""
    t = time.perf_counter()
    with store.session() as s:
        towns = [r[0] for r in s.execute(select(Address.town_code).distinct().order_by(Address.town_code))]
        stations = {}
        for county in COUNTIES:
            st = PoliceStation(code=f"{county}01", name=f"{COUNTIES[county][0]}城关派出所", county_code=county)
            s.add(st)
            s.flush()
            stations[county] = st.id
        areas = {}
        for i, town in enumerate(towns):
            area = PoliceArea(code=f"{town}JW", name=f"第{i + 1}警务区", station_id=stations[town[:6]])
            s.add(area)
            s.flush()
            areas[town] = area.id
        s.commit()
    with store.session() as s:
        for town, area_id in areas.items():
            s.execute(update(Address).where(Address.town_code == town).values(police_area_id=area_id))
        s.commit()
    timer.stage("police areas (addresses updated)", len(areas), time.perf_counter() - t)
    return areas


def devices(store: Store, scale: float, days: int, timer: Timer) -> tuple[list[tuple[str, str]], list[int]]:
    """Devices, channels, status history. Returns ([(APE id, community)], device pks)."""
    n = max(50, int(FULL["devices"] * scale))
    n_viid = n * 6 // 25
    n_nvr = n // 25
    rnd = random.Random(23)
    with store.session() as s:
        comms = [tuple(r) for r in s.execute(select(Address.community_code, Address.police_area_id, Address.id)
                                             .where(Address.level == "community").order_by(Address.code))]
    t = time.perf_counter()
    dev_rows, apes = [], []
    base = DAY0 - timedelta(days=60)
    for i in range(n):
        pk = i + 1
        comm, area, addr = comms[i % len(comms)]
        if i < n_viid:
            protocol, did, type_code, name = "viid", f"{comm[:8]}11{i:010d}"[:20], None, f"卡口{i}"
            apes.append((did, comm))
        else:
            nvr = i < n_viid + n_nvr
            protocol, type_code = "gb28181", "118" if nvr else "132"
            did = f"{comm[:8]}{type_code}{i:07d}"[:20].ljust(20, "0")
            name = f"{'录像机' if nvr else '摄像机'}{i}"
        online = rnd.random() < 0.93
        dev_rows.append({"id": pk, "protocol": protocol, "device_id": did, "name": name, "type_code": type_code,
                         "manufacturer": "Hikvision" if i % 3 else "Dahua", "review": "approved",
                         "status": "online" if online else "offline", "community_code": comm,
                         "address_id": addr, "police_area_id": area, "placement": "placed",
                         "attributes": {}, "created_at": base, "registered_at": base,
                         "last_seen": DAY0 + timedelta(days=days) - timedelta(minutes=rnd.randrange(1, 600))})
    ch_rows = []
    for d in dev_rows:
        if d["protocol"] != "gb28181":
            continue
        for c in range(16 if d["type_code"] == "118" else 1):
            ch_rows.append({"device_pk": d["id"], "channel_id": f"{d['device_id'][:10]}131{d['id']:05d}{c:02d}",
                            "name": f"{d['name']}-{c + 1}", "type_code": "131", "civil_code": d["community_code"],
                            "status": d["status"], "shared": False, "attributes": {}, "updated_at": base})
    with store.session() as s:
        for i in range(0, len(dev_rows), BATCH):
            s.execute(insert(Device), dev_rows[i:i + BATCH])
        for i in range(0, len(ch_rows), BATCH):
            s.execute(insert(Channel), ch_rows[i:i + BATCH])
        s.commit()
    timer.stage("devices + channels", len(dev_rows) + len(ch_rows), time.perf_counter() - t)
    t = time.perf_counter()
    hist = 0
    rows = []
    for d in dev_rows:
        # a month of transitions: most devices drop out a few times, a few flap daily
        flaps = rnd.choice((0, 1, 2, 3, 4, 6, 30))
        at = DAY0
        state = "online"
        for _ in range(flaps * 2):
            at = at + timedelta(minutes=rnd.randrange(30, max(31, days * 1440 // max(1, flaps * 2))))
            state = "offline" if state == "online" else "online"
            rows.append({"device_pk": d["id"], "at": at, "status": state,
                         "reason": "timeout" if state == "offline" else "register"})
        if len(rows) >= BATCH:
            bulk(store, DeviceStatusChange, rows)
            hist += len(rows)
            rows = []
    bulk(store, DeviceStatusChange, rows)
    hist += len(rows)
    from anfang.devices.uptime import rebuild

    with store.session() as s:  # history written straight: the uptime rollup is recomputed from it
        rebuild(s)
    timer.stage("device status history", hist, time.perf_counter() - t)
    return apes, [d["id"] for d in dev_rows]


_PROVINCES = "闽闽闽闽闽赣浙粤"
_LETTERS = "GGGGGADFHJ"


def captures(store: Store, apes: list[tuple[str, str]], per_day: int, days: int, timer: Timer) -> dict:
    """``per_day`` captures a day for ``days`` days, straight into viid_objects (time-compressed); per-day rates."""
    rnd = random.Random(31)
    total = 0
    t0 = time.perf_counter()
    day_seconds = []
    seq = 0
    for day in range(days):
        td = time.perf_counter()
        start = DAY0 + timedelta(days=day)
        done = 0
        while done < per_day:
            k = min(BATCH, per_day - done)
            rows = []
            for j in range(k):
                seq += 1
                dev, comm = apes[rnd.randrange(len(apes))]
                shot = start + timedelta(seconds=(done + j) * 86_400 // per_day)
                face = seq % 3 == 0
                kind = "face" if face else "motor"
                oid = f"{dev}02{shot:%Y%m%d%H%M%S}{seq % 100_000:05d}"
                plate = None if face else (f"{_PROVINCES[seq % 8]}{_LETTERS[seq % 10]}"
                                           f"{rnd.randrange(10_000, 99_999)}")
                body = {"DeviceID": dev, "ShotTime": f"{shot:%Y%m%d%H%M%S}"}
                if plate:
                    body["PlateNo"] = plate
                rows.append({"kind": kind, "object_id": oid, "source_id": oid[:41], "device_id": dev,
                             "shot_at": shot, "received_at": shot + timedelta(seconds=1), "plate_no": plate,
                             "plate_color": None if face else "2", "gender": ("1" if seq % 2 else "2") if face
                             else None, "community_code": comm, "origin": dev, "body": json.dumps(body), "faces": None})
            bulk(store, ViidObject, rows)
            done += k
        total += per_day
        day_seconds.append(time.perf_counter() - td)
        console.print(f"  captures day {day + 1}/{days}: {per_day:,} rows in {day_seconds[-1]:.1f} s", end="\r")
    console.print()
    secs = time.perf_counter() - t0
    timer.stage("captures (viid_objects)", total, secs)
    rate = total / secs if secs else 0
    return {"captures": total, "per_day": per_day, "days": days, "rows_per_s": round(rate),
            "first_day_s": round(day_seconds[0], 1) if day_seconds else 0,
            "last_day_s": round(day_seconds[-1], 1) if day_seconds else 0,
            "rows_per_day_at_this_rate": round(rate * 86_400)}


_RULES = [("smoke.alarm", "sensor", "烟感报警"), ("plate.watchlist", "plate", "布控车辆出现"),
          ("face.watchlist", "face", "布控人员出现"), ("door.forced", "alarm", "门禁强行开门"),
          ("device.offline", "device", "设备离线")]
_STATES = ["new", "new", "dispatched", "acknowledged", "handled", "handled", "closed", "closed", "closed", "closed"]


def events_and_warnings(store: Store, scale: float, days: int, areas: dict[str, int], timer: Timer) -> None:
    n_events = max(1000, int(FULL["events"] * scale))
    n_warn = max(100, int(FULL["warnings"] * scale))
    rnd = random.Random(41)
    with store.session() as s:
        comms = [tuple(r) for r in s.execute(select(Address.community_code, Address.id, Address.town_code)
                                             .where(Address.level == "community").order_by(Address.code))]
    span = days * 86_400
    t = time.perf_counter()
    kinds = ["sensor.reading", "door.opened", "alarm", "device.status", "capture"]
    ev_ids = []
    rows = []
    for i in range(n_events):
        comm, addr, _town = comms[rnd.randrange(len(comms))]
        at = DAY0 + timedelta(seconds=i * span // n_events)
        eid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        if i % (n_events // n_warn or 1) == 0:
            ev_ids.append((eid, comm, addr, at))
        rows.append({"id": eid, "kind": kinds[i % len(kinds)], "at": at, "source": f"dev-{i % 5000}",
                     "node_id": "350400", "community_code": comm, "address_id": addr, "data": {"v": i % 100},
                     "recorded_at": at})
        if len(rows) == BATCH:
            bulk(store, EventRecord, rows)
            rows = []
    bulk(store, EventRecord, rows)
    timer.stage("events (event_log)", n_events, time.perf_counter() - t)
    t = time.perf_counter()
    rows = []
    for i, (eid, comm, addr, at) in enumerate(ev_ids[:n_warn]):
        rule, cat, title = _RULES[i % len(_RULES)]
        state = _STATES[rnd.randrange(len(_STATES))]
        uid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        rows.append({"uid": uid, "rule": rule, "category": cat, "title": title, "severity": 1 + i % 3,
                     "state": state, "source": f"dev-{i % 5000}", "event_id": eid,
                     "dedup_key": f"{rule}:{comm}:{i}", "hits": 1, "county_code": comm[:6],
                     "community_code": comm, "address_id": addr, "police_area_id": areas.get(comm[:9] + "000"),
                     "notify_roles": "police", "data": {}, "created_at": at, "last_hit_at": at,
                     "acknowledged_at": at + timedelta(minutes=3) if state != "new" else None,
                     "handled_at": at + timedelta(minutes=40) if state in ("handled", "closed") else None})
        if len(rows) == BATCH:
            bulk(store, Warning, rows)
            rows = []
    bulk(store, Warning, rows)
    timer.stage("warnings", min(n_warn, len(ev_ids)), time.perf_counter() - t)


def logins(store: Store, areas: dict[str, int]) -> None:
    """city / county (三元区) / police (the 警务区 of 三元区's first town, which has addresses and persons)."""
    town = min(t for t in areas if t.startswith(COUNTY)) if any(t.startswith(COUNTY) for t in areas) else min(areas)
    with store.session() as s:
        create_user(s, username="city", password=PASSWORD, role=Role.city_admin, display_name="市级管理员")
        create_user(s, username="county", password=PASSWORD, role=Role.county_admin, display_name="三元区管理员",
                    county_code=COUNTY)
        create_user(s, username="police", password=PASSWORD, role=Role.police, display_name="社区民警",
                    police_area_id=areas[town])
        s.commit()


def analyze(store: Store, db: str) -> None:
    with store.engine.connect() as c:
        if db == "sqlite":
            c.execute(text("ANALYZE"))
        else:
            c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        c.commit()


def build(db: str, scale: float, days: int, per_day: int | None, pg_url: str, start: str = "regions") -> dict:
    settings = settings_for(db, scale, pg_url)
    crypto.configure_from_settings(settings)
    if start == "regions":
        reset_database(db, settings.database_url or "", pg_url)
    upgrade(settings.database_url)
    store = Store(settings.database_url)
    timer = Timer()
    t = time.perf_counter()
    console.print(f"[bold]{db}: city data set, scale {scale:g} → {settings.database_url}")
    cap: dict = {}
    try:
        stages = ["regions", "houses", "units", "devices", "captures", "events"]
        at = stages.index(start)
        if at <= 2:
            registry(store, scale, timer, start)
            areas = police(store, timer)
        else:
            with store.session() as s:
                areas = {code[:-2]: pk for code, pk in s.execute(select(PoliceArea.code, PoliceArea.id))}
        if at <= 3:
            devices(store, scale, days, timer)
        with store.session() as s:
            apes = [tuple(r) for r in s.execute(select(Device.device_id, Device.community_code)
                                                .where(Device.protocol == "viid").order_by(Device.id))]
        if at <= 4:
            cap = captures(store, apes, per_day or max(1000, int(FULL["captures_per_day"] * scale)), days, timer)
        events_and_warnings(store, scale, days, areas, timer)
        logins(store, areas)
        ta = time.perf_counter()
        analyze(store, db)
        timer.stage("ANALYZE", 0, time.perf_counter() - ta)
        with store.session() as s:
            counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in
                      (Address, Device, Channel, DeviceStatusChange, ViidObject, EventRecord, Warning)}
    finally:
        store.dispose()
    total = time.perf_counter() - t
    console.print(f"done in {total:.0f} s: {counts}")
    if cap:
        console.print(f"captures: {cap['rows_per_s']:,} rows/s straight into the store → "
                      f"{cap['rows_per_day_at_this_rate']:,} rows per day of writing on this disk; first day "
                      f"{cap['first_day_s']} s, last day {cap['last_day_s']} s for {cap['per_day']:,} rows")
    return {"db": db, "scale": scale, "url": settings.database_url, "stages": timer.rows, "captures": cap,
            "counts": counts, "seconds": round(total)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--captures-per-day", type=int, default=None, help="default 100,000 × scale")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--start-at", choices=["houses", "units", "devices", "captures", "events"], default=None,
                    help="keep the database and go on from this stage (after an interrupted run)")
    args = ap.parse_args()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for db in dbs:
        result = build(db, args.scale, args.days, args.captures_per_day, args.pg_url, args.start_at or "regions")
        save_results(f"citydata_{db}_{tag_of(args.scale)}", result)


if __name__ == "__main__":  # the importer's parsing processes are spawned: they must not run this again
    main()
