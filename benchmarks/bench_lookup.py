"""Lookup benchmark on the database left by bench_import.py, through the query functions the API uses.

    .venv/bin/python benchmarks/bench_import.py --persons 2500000 --db sqlite     # once, builds the database
    .venv/bin/python benchmarks/bench_lookup.py --persons 2500000 --db sqlite

Measures anfang.registry.service.RegistryService.search_persons end to end (query, masking and the audit entry
every read of personal data appends):

- by identity number: random persons, one exact lookup each (target p99 <= 5 ms);
- by address prefix: first page (20 rows, ordered by address full name) of persons whose address full name starts
  with a prefix cut from a random address at county, town, community or building depth (target p99 <= 50 ms).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from common import PG_URL, console, db_url, progress, save_results
from rich.table import Table
from sqlalchemy import func, select

from anfang.registry.models import Address, Person, Region
from anfang.registry.service import RegistryService
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store

TARGETS_MS = {"id_number": 5.0, "address_prefix": 50.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def sample_ids(store: Store, n: int, rnd: random.Random) -> list[str]:
    with store.session() as s:
        low, top = s.execute(select(func.min(Person.id), func.max(Person.id))).one()
        wanted = rnd.sample(range(low or 1, (top or 0) + 1), min(n * 2, (top or 0) - (low or 1) + 1))
        found = list(s.scalars(select(Person.id_number).where(Person.id.in_(wanted))))
    rnd.shuffle(found)
    return found[:n]


def sample_prefixes(store: Store, n: int, rnd: random.Random) -> list[str]:
    """Prefixes of random room addresses' full names at county / town / community / building depth."""
    with store.session() as s:
        low, top = s.execute(select(func.min(Address.id), func.max(Address.id))).one()
        rows = s.execute(select(Address.full_name, Address.county_code, Address.community_code)
                         .where(Address.id.in_(rnd.sample(range(low, top + 1), min(n * 3, top - low + 1))),
                                Address.level == "room")).all()
        names = {r.code: r.full_name for r in s.scalars(select(Region))}
    out = []
    for full, county, community in rows:
        town = community[:9] + "000"
        depth = rnd.choice(("county", "town", "community", "building"))
        if depth == "county":
            prefix = names[county]
        elif depth == "town":
            prefix = names[town]
        elif depth == "community":
            prefix = names[community]
        else:
            prefix = full[: full.index("栋") + 1] if "栋" in full else names[community]
        out.append(prefix.removeprefix("福建省") if rnd.random() < 0.5 else prefix)  # both spellings are accepted
    rnd.shuffle(out)
    return out[:n]


def _backend_cpu(store: Store) -> float:
    """CPU seconds (user + system) of this database's PostgreSQL backends (same host, /proc); 0 on SQLite."""
    if store.engine.dialect.name != "postgresql":
        return 0.0
    from bench_viid import cpu_seconds
    from sqlalchemy import text

    with store.engine.connect() as c:
        pids = list(c.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
    return sum(x for x in (cpu_seconds(pid) for pid in pids) if x == x)


def measure(label: str, calls: list, warmup: int = 50, store: Store | None = None,
            cpu: dict | None = None) -> list[float]:
    """Wall ms per call; with ``cpu``, also this process's and the database backends' CPU ms per call (the figures a
    loaded, shared machine cannot spoil: wall time there is mostly waiting for a core)."""
    for fn in calls[:warmup]:
        fn()
    times: list[float] = []
    c0, b0 = time.process_time(), (_backend_cpu(store) if store is not None else 0.0)
    with progress() as bar:
        task = bar.add_task(label, total=len(calls))
        for fn in calls:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
            bar.advance(task)
    if cpu is not None:
        cpu["app_cpu_ms"] = round(1000 * (time.process_time() - c0) / len(calls), 3)
        cpu["db_cpu_ms"] = round(1000 * ((_backend_cpu(store) if store is not None else 0.0) - b0) / len(calls), 3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=2_500_000, help="size of the database built by bench_import.py")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    store = Store(db_url(args.db, args.persons, args.pg_url))
    service = RegistryService(store)
    rnd = random.Random(args.seed)
    city = Principal(user_id=None, username="bench", role=Role.city_admin, client="bench")
    with store.session() as s:
        n_persons = s.scalar(select(func.count()).select_from(Person))
    console.print(f"{args.db}: {n_persons:,} persons")

    ids = sample_ids(store, args.samples, rnd)
    prefixes = sample_prefixes(store, args.samples, rnd)

    def by_id(idn: str):  # noqa: ANN202
        def call() -> None:
            page = service.search_persons(city, id_number=idn, page=1, size=20)
            assert len(page.items) == 1, idn
        return call

    def by_prefix(prefix: str):  # noqa: ANN202
        def call() -> None:
            page = service.search_persons(city, address_prefix=prefix, page=1, size=20)
            assert page.items, prefix
        return call

    cpu: dict[str, dict] = {"id_number": {}, "address_prefix": {}}
    results = {
        "id_number": measure(f"{args.db} 身份证号查询", [by_id(i) for i in ids], store=store, cpu=cpu["id_number"]),
        "address_prefix": measure(f"{args.db} 地址前缀查询", [by_prefix(p) for p in prefixes], store=store,
                                  cpu=cpu["address_prefix"]),
    }
    table = Table(title=f"查询基准 / lookup benchmark, {args.db}, {n_persons:,} persons (ms; load "
                        f"{os.getloadavg()[0]:.1f})")
    for col in ("query", "n", "p50", "p90", "p99", "max", "target p99", "met", "CPU app+db"):
        table.add_column(col, justify="left" if col == "query" else "right")
    summary = {}
    for name, times in results.items():
        p50, p90, p99 = (percentile(times, q) for q in (50, 90, 99))
        ok = p99 <= TARGETS_MS[name]
        summary[name] = {"n": len(times), "p50": round(p50, 2), "p90": round(p90, 2), "p99": round(p99, 2),
                         "max": round(max(times), 2), "mean": round(statistics.fmean(times), 2),
                         "target_p99": TARGETS_MS[name], "met": ok, **cpu[name]}
        table.add_row(name, str(len(times)), f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{max(times):.2f}",
                      f"{TARGETS_MS[name]:.0f}", "[green]yes" if ok else "[red]no",
                      f"{cpu[name]['app_cpu_ms']:.2f}+{cpu[name]['db_cpu_ms']:.2f}")
    console.print(table)
    path = save_results(f"lookup_{args.db}_{args.persons}", {"db": args.db, "persons": n_persons, **summary})
    console.print(f"结果已保存 / saved: {path}")
    store.dispose()


if __name__ == "__main__":
    main()
