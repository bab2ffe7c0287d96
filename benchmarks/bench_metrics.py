"""The seed's metrics (registry.metrics.compute) at scale: the old scan vs the rollups, and what the rollups'
triggers cost the import.

    .venv/bin/python benchmarks/bench_import.py --persons 2500000 --db both      # once, builds the databases
    .venv/bin/python benchmarks/bench_metrics.py --persons 2500000 --db both
    .venv/bin/python benchmarks/bench_metrics.py --persons 200000 --db both --trigger-cost

Metrics: on the database left by bench_import.py (datagen has no 警务区: the first run gives the first town's
addresses one, an UPDATE that the triggers follow), times per principal and level the scan the pages used to
run (``metrics.compute_from_scan``) and what they run now (``metrics.compute``, summing the rollup's cells):
the city admin's home page (county level + city total, two calls), a county admin, an officer (警务区), property
staff (one community). Limit: 500 ms per page (issue 20).

--trigger-cost: imports the persons file into copies of one database holding the regions and addresses, with the
rollup triggers and without them, alternating (the machine is shared: alternating keeps the load alike), and
prints both rates; the import target is ≥ 20,000 rows/s on SQLite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable

import datagen
from common import PG_URL, console, db_url, fresh_database, save_results
from rich.table import Table
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url

from anfang.registry import metrics
from anfang.registry.importer import import_file
from anfang.registry.models import Address, Person, PoliceArea, PoliceStation, Region
from anfang.rollups import ddl
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.store.migrate import upgrade

LIMIT_MS = 500.0


def ensure_police_area(store: Store) -> int:
    """The officer's 警务区 (datagen has none): the first town's addresses are given one; returns its id."""
    with store.session() as s:
        first = s.scalar(select(func.min(PoliceArea.id)))
        if first is not None:
            return first
    t = time.perf_counter()
    with store.session() as s:
        code, name = s.execute(select(Region.code, Region.name).where(Region.level == "town")
                               .order_by(Region.code).limit(1)).one()
        st = PoliceStation(code=f"P{code[:6]}", name=f"{code[:6]}派出所", county_code=code[:6])
        s.add(st)
        s.flush()
        area = PoliceArea(code=f"A{code}", name=f"{name}警务区", station_id=st.id)
        s.add(area)
        s.flush()
        n = s.execute(update(Address).where(Address.town_code == code).values(police_area_id=area.id)).rowcount
        first = area.id
    console.print(f"警务区 / police area: {n:,} addresses of {name} given one in {time.perf_counter() - t:.1f}s "
                  "(the triggers moved their counts)")
    return first


def timed(fn: Callable[[], object], runs: int, warm: bool = True) -> list[float]:
    if warm:
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_metrics(db: str, persons: int, pg_url: str, runs: int) -> list[dict]:
    store = Store(db_url(db, persons, pg_url))
    try:
        area = ensure_police_area(store)
        with store.session() as s:
            n_persons = s.scalar(select(func.count()).select_from(Person))
            n_addresses = s.scalar(select(func.count()).select_from(Address))
            community, county = s.execute(select(Address.community_code, Address.county_code)
                                          .where(Address.level == "room").limit(1)).one()
        console.print(f"{db}: {n_persons:,} persons, {n_addresses:,} addresses")
        city = Principal(user_id=None, username="bench", role=Role.city_admin, client="bench")
        who = {
            "city admin, home page (county + city)": (city, ("county", "city")),
            "county admin, communities": (Principal(user_id=None, username="bench", role=Role.county_admin,
                                                    county_code=county, client="bench"), ("community",)),
            "officer (警务区), communities": (Principal(user_id=None, username="bench", role=Role.police,
                                                      police_area_id=area, client="bench"), ("community",)),
            "property staff, community": (Principal(user_id=None, username="bench", role=Role.property_staff,
                                                    community_code=community, client="bench"), ("community",)),
        }
        rows = []
        for label, (p, levels) in who.items():
            same = all([r.to_dict() for r in metrics.compute(store, p, lv)]
                       == [r.to_dict() for r in metrics.compute_from_scan(store, p, lv)] for lv in levels)
            before = timed(lambda p=p, levels=levels: [metrics.compute_from_scan(store, p, lv) for lv in levels],
                           max(2, runs // 3), warm=False)  # seconds a call at scale: the runs warm it
            after = timed(lambda p=p, levels=levels: [metrics.compute(store, p, lv) for lv in levels], runs)
            rows.append({"db": db, "persons": n_persons, "who": label, "same_rows": same,
                         "before_ms": round(statistics.median(before), 1), "before_max_ms": round(max(before), 1),
                         "after_ms": round(statistics.median(after), 2), "after_max_ms": round(max(after), 2)})
        return rows
    finally:
        store.dispose()


def _copy_db(db: str, template: str, name: str, pg_url: str) -> str:
    if db == "sqlite":
        src = make_url(template).database or ""
        dst = src.replace(".db", f"_{name}.db")
        shutil.copyfile(src, dst)
        return f"sqlite:///{dst}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    tpl, target = make_url(template).database, f"{make_url(template).database}_{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{tpl}"'))
    admin.dispose()
    return make_url(template).set(database=target).render_as_string(hide_password=False)


def _drop_db(db: str, url: str, pg_url: str) -> None:
    if db == "sqlite":
        from pathlib import Path

        Path(make_url(url).database or "").unlink(missing_ok=True)
        return
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def bench_trigger_cost(db: str, persons: int, pg_url: str, rounds: int) -> list[dict]:
    files = datagen.generate(persons)
    template = fresh_database(db, persons + 1, pg_url)  # its own name: not the metrics database
    upgrade(template)
    store = Store(template)
    principal = Principal.system("bench")
    for kind, path in (("regions", files.regions), ("addresses", files.addresses)):
        import_file(store, kind, path, principal)
    store.dispose()
    rates: dict[str, list[float]] = {"with triggers": [], "without": []}
    for i in range(rounds):
        for mode in ("with triggers", "without"):
            url = _copy_db(db, template, f"r{i}{'t' if mode == 'with triggers' else 'n'}", pg_url)
            store = Store(url)
            if mode == "without":
                with store.engine.begin() as conn:
                    for stmt in ddl.drop_statements(conn.dialect.name):
                        conn.exec_driver_sql(stmt)
            report = import_file(store, "persons", files.persons, principal)
            store.dispose()
            _drop_db(db, url, pg_url)
            rates[mode].append(report.rows_per_second)
            console.print(f"{db} round {i + 1} {mode}: {report.rows_per_second:,.0f} persons/s")
    _drop_db(db, template, pg_url)
    return [{"db": db, "persons": persons, "mode": mode, "rates": [round(r) for r in rs],
             "median_rows_per_s": round(statistics.median(rs))} for mode, rs in rates.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=2_500_000, help="size of the database built by bench_import.py")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--runs", type=int, default=9, help="timed calls per principal (the scan: a third, at least 2)")
    ap.add_argument("--trigger-cost", action="store_true", help="measure the import with and without triggers")
    ap.add_argument("--rounds", type=int, default=2, help="--trigger-cost: imports per mode")
    args = ap.parse_args()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]

    if args.trigger_cost:
        results = [r for db in dbs for r in bench_trigger_cost(db, args.persons, args.pg_url, args.rounds)]
        table = Table(title=f"汇总触发器的导入代价 / import cost of the rollup triggers, {args.persons:,} persons")
        for col in ("db", "mode", "rows/s per round", "median rows/s"):
            table.add_column(col, justify="left" if col in ("db", "mode") else "right")
        for r in results:
            table.add_row(r["db"], r["mode"], ", ".join(f"{x:,}" for x in r["rates"]), f"{r['median_rows_per_s']:,}")
        console.print(table)
        for db in dbs:
            on, off = (next(r["median_rows_per_s"] for r in results if r["db"] == db and r["mode"] == m)
                       for m in ("with triggers", "without"))
            target = (f" — target ≥ 20,000: {'[green]met' if on >= 20_000 else '[red]NOT met'}"
                      if db == "sqlite" else "")
            console.print(f"{db}: with triggers {on:,} rows/s, without {off:,}: the triggers cost "
                          f"{(1 - on / off) * 100:.0f} % of the rate{target}")
        path = save_results(f"trigger_cost_{args.db}_{args.persons}", {"results": results})
        console.print(f"结果已保存 / saved: {path}")
        return

    results = [r for db in dbs for r in bench_metrics(db, args.persons, args.pg_url, args.runs)]
    table = Table(title=f"一标三实指标 / seed metrics, {args.persons:,} persons: scan (before) vs rollups (after), ms")
    for col in ("db", "principal", "same rows", "before p50", "before max", "after p50", "after max", "limit",
                "met"):
        table.add_column(col, justify="left" if col in ("db", "principal") else "right")
    for r in results:
        ok = r["after_max_ms"] <= LIMIT_MS
        table.add_row(r["db"], r["who"], "yes" if r["same_rows"] else "[red]NO", f"{r['before_ms']:,.1f}",
                      f"{r['before_max_ms']:,.1f}", f"{r['after_ms']:,.2f}", f"{r['after_max_ms']:,.2f}",
                      f"{LIMIT_MS:.0f}", "[green]yes" if ok else "[red]NO")
    console.print(table)
    path = save_results(f"metrics_{args.db}_{args.persons}", {"results": results})
    console.print(f"结果已保存 / saved: {path}")


if __name__ == "__main__":  # the importer's parsing process is spawned: it must not run the benchmark again
    main()
