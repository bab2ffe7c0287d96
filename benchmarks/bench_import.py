"""Import benchmark: N persons (with the regions and standard addresses they live at) from CSV.

    .venv/bin/python benchmarks/bench_import.py --persons 2500000 --db sqlite
    .venv/bin/python benchmarks/bench_import.py --persons 2500000 --db postgresql
    .venv/bin/python benchmarks/bench_import.py --persons 200000 --db both --reimport

Generates (or reuses) benchmarks/out/{regions,addresses,persons}_N.csv, creates a fresh database
(benchmarks/out/bench_N.db, or the scratch PostgreSQL database anfang_bench_N on the server of --pg-url), imports
the three files through anfang.registry.importer.import_file, end to end (reading, parsing, validation, writing),
and prints rows/s. The database is kept for bench_lookup.py.
"""

from __future__ import annotations

import argparse
import time

import datagen
from common import PG_URL, console, fresh_database, progress, save_results
from rich.table import Table

from anfang.registry.importer import import_file
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.store.migrate import upgrade


def generate(persons: int, force: bool) -> datagen.Files:
    with progress() as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, advance: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"生成 {stage}", total=total)
            bar.advance(tasks[stage], advance)

        t = time.perf_counter()
        files = datagen.generate(persons, force=force, tick=tick)
    console.print(f"数据文件 / data files: {files.n_regions} regions, {files.n_addresses} addresses, "
                  f"{files.n_persons} persons ({time.perf_counter() - t:.1f}s; reused when present)")
    return files


def run(db: str, files: datagen.Files, persons: int, pg_url: str, reimport: bool, batch_size: int,
        parallel: bool | None) -> list[dict]:
    url = fresh_database(db, persons, pg_url)
    upgrade(url)
    store = Store(url)
    principal = Principal.system("bench")
    results = []
    steps = [("regions", files.regions), ("addresses", files.addresses), ("persons", files.persons)]
    if reimport:
        steps.append(("persons (re-import)", files.persons))
    try:
        with progress() as bar:
            for label, path in steps:
                kind = label.split()[0]
                task = bar.add_task(f"{db} 导入 {label}", total=None)
                report = import_file(store, kind, path, principal, batch_size=batch_size, parallel=parallel,
                                     progress=lambda done, total, task=task: bar.update(task, completed=done,
                                                                                          total=total))
                results.append({"db": db, "step": label, "rows": report.total, "inserted": report.inserted,
                                "updated": report.updated, "unchanged": report.unchanged,
                                "errors": len(report.errors), "seconds": round(report.seconds, 2),
                                "rows_per_s": round(report.rows_per_second)})
                if report.errors:
                    console.print(f"[red]{label}: {len(report.errors)} errors, first: {report.errors[:3]}")
    finally:
        store.dispose()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=2_500_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL, help="server (and admin database) for the scratch database")
    ap.add_argument("--reimport", action="store_true", help="import the persons file a second time (all unchanged)")
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--serial", action="store_true", help="parse in this process (no parsing process)")
    ap.add_argument("--regenerate", action="store_true", help="write the CSV files again")
    args = ap.parse_args()

    files = generate(args.persons, args.regenerate)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: list[dict] = []
    for db in dbs:
        results += run(db, files, args.persons, args.pg_url, args.reimport, args.batch_size,
                       False if args.serial else None)

    table = Table(title=f"导入基准 / import benchmark, {args.persons:,} persons")
    for col in ("db", "step", "rows", "inserted", "updated", "unchanged", "errors", "seconds", "rows/s"):
        table.add_column(col, justify="left" if col in ("db", "step") else "right")
    for r in results:
        table.add_row(r["db"], r["step"], f"{r['rows']:,}", f"{r['inserted']:,}", f"{r['updated']:,}",
                      f"{r['unchanged']:,}", str(r["errors"]), f"{r['seconds']:.1f}", f"{r['rows_per_s']:,}")
    console.print(table)
    target = [r for r in results if r["step"] == "persons"]
    for r in target:
        ok = r["rows_per_s"] >= 20_000
        console.print(f"{r['db']}: persons {r['rows_per_s']:,} rows/s — target ≥ 20,000: "
                      f"{'[green]met' if ok else '[red]NOT met'}")
    path = save_results(f"import_{args.db}_{args.persons}", {"persons": args.persons, "results": results})
    console.print(f"结果已保存 / saved: {path}")


if __name__ == "__main__":  # the parsing process is spawned: it must not run the benchmark again
    main()
