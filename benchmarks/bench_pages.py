"""Every console page and its API at city scale (issue 20, item 2), on the data set of citydata.py.

    .venv/bin/python benchmarks/bench_pages.py --db sqlite --scale 0.01       # the small set
    .venv/bin/python benchmarks/bench_pages.py --db sqlite                    # the full set (scale 1)
    .venv/bin/python benchmarks/bench_pages.py --db postgresql [--n 10] [--only persons]

The real application (anfang.app.create_app over the generated database, its startup and shutdown run) is
driven in-process by Starlette's TestClient: a request's time is everything from the request to the last byte
of the answer — routing, the session check, the queries, the audit entry, the template — what the user waits
for, without the network. Logs in as the city admin, the county admin (三元区) and the officer (a 警务区), and
requests every page and API ``--n`` times after one warm-up request (fewer when a page takes longer than
``--budget`` seconds in all), then prints ONE table, slowest p95 first, with the 500 ms limit and PASS/FAIL.
A request that does not answer 200 is shown with its status and counts as FAIL.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

from citydata import COUNTY, DAY0, PASSWORD, settings_for, tag_of
from common import PG_URL, console, save_results
from fastapi.testclient import TestClient
from rich.table import Table
from sqlalchemy import event, func, select

from anfang.app import create_app
from anfang.devices.models import Device
from anfang.registry.models import Address, House, Person, WorkUnit
from anfang.security import crypto
from anfang.store.engine import Store
from anfang.viid.models import ViidObject
from anfang.warnings.models import Warning

LIMIT_MS = 500.0
ROLES = ("city", "county", "police")


def fixtures(store: Store, police_area: int | None) -> dict:
    """Ids and prefixes the pages are asked for: records inside the officer's 警务区 (visible to all three)."""
    with store.session() as s:
        room = s.execute(select(Address.id, Address.code, Address.full_name).where(
            Address.level == "room", Address.police_area_id == police_area).order_by(Address.id).limit(1)).one()
        town_prefix = s.scalar(select(Address.full_name).where(Address.level == "community",
                                                               Address.police_area_id == police_area).limit(1))
        person = s.execute(select(Person.id, Person.id_number, Person.name).where(
            Person.address_id == room.id)).first() or s.execute(select(Person.id, Person.id_number, Person.name)
                                                                .order_by(Person.id).limit(1)).one()
        house = s.scalar(select(House.id).where(House.address_id == room.id)) or s.scalar(select(func.min(House.id)))
        unit = s.execute(select(WorkUnit.id, WorkUnit.name, WorkUnit.credit_code).order_by(WorkUnit.id)
                         .limit(1)).one()
        comm = s.scalar(select(Address.community_code).where(Address.id == room.id))
        device = s.scalar(select(Device.id).where(Device.community_code == comm, Device.protocol == "gb28181")
                          .limit(1)) or s.scalar(select(func.min(Device.id)))
        ape = s.scalar(select(Device.device_id).where(Device.community_code == comm, Device.protocol == "viid")
                       .limit(1)) or s.scalar(select(Device.device_id).where(Device.protocol == "viid").limit(1))
        warning = s.scalar(select(Warning.id).where(Warning.police_area_id == police_area).limit(1)) or \
            s.scalar(select(func.min(Warning.id)))
        last = s.scalar(select(func.max(ViidObject.shot_at)))
    # a building's prefix (its rooms, ~120 persons), and the community's (a few thousand)
    building = room.full_name.rsplit("单元", 1)[0].rsplit("栋", 1)[0] + "栋"
    return {"person": person.id, "id_number": person.id_number, "name": person.name, "address": room.id,
            "room_name": room.full_name, "building": building, "community_prefix": town_prefix, "house": house,
            "unit": unit.id, "unit_name": unit.name[:4], "credit_code": unit.credit_code, "community": comm,
            "device": device, "ape": ape, "warning": warning, "last": last or DAY0}


def pages(f: dict) -> list[tuple[str, str, str]]:
    """(area, name, url) of every console page and API measured."""
    last = f["last"]
    day = (last - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    end = last.strftime("%Y-%m-%dT%H:%M")
    reason = "reason=%E5%B7%A1%E6%9F%A5"  # 巡查
    return [
        ("home", "首页 /", "/"),
        ("metrics", "指标 /metrics", "/metrics"),
        ("metrics", "未达标 /metrics/below", "/metrics/below?metric=persons_verified"),
        ("metrics", "API /api/metrics", "/api/metrics"),
        ("metrics", "API /api/metrics/below", "/api/metrics/below?metric=persons_verified"),
        ("persons", "人员 身份证号", f"/persons?id_number={f['id_number']}"),
        ("persons", "人员 姓名", f"/persons?name={f['name']}"),
        ("persons", "人员 楼栋前缀", f"/persons?address_prefix={f['building']}&{reason}"),
        ("persons", "人员 小区前缀", f"/persons?address_prefix={f['community_prefix']}&{reason}"),
        ("persons", "人员 详情", f"/persons/{f['person']}"),
        ("persons", "API 人员 身份证号", f"/api/persons?id_number={f['id_number']}"),
        ("persons", "API 人员 楼栋前缀", f"/api/persons?address_prefix={f['building']}&{reason}"),
        ("persons", "API 人员 小区前缀", f"/api/persons?address_prefix={f['community_prefix']}&{reason}"),
        ("persons", "API 人员 详情", f"/api/persons/{f['person']}"),
        ("addresses", "地址 列表", "/addresses"),
        ("addresses", "地址 前缀", f"/addresses?q={f['building']}"),
        ("addresses", "地址 详情", f"/addresses/{f['address']}"),
        ("addresses", "API 地址 前缀", f"/api/addresses?prefix={f['building']}"),
        ("addresses", "API 地址 全部", "/api/addresses"),
        ("addresses", "API 地址 第50页", "/api/addresses?page=50"),
        ("addresses", "API 小区/村", "/api/addresses/roots"),
        ("addresses", "API 地址 详情", f"/api/addresses/{f['address']}"),
        ("houses", "房屋 列表", "/houses"),
        ("houses", "房屋 前缀", f"/houses?address_prefix={f['building']}"),
        ("houses", "房屋 详情", f"/houses/{f['house']}"),
        ("houses", "API 房屋", "/api/houses"),
        ("houses", "API 房屋 待核实", "/api/houses?verification=unverified"),
        ("houses", "API 房屋 详情", f"/api/houses/{f['house']}"),
        ("units", "单位 列表", "/units"),
        ("units", "单位 名称", f"/units?name={f['unit_name']}"),
        ("units", "单位 详情", f"/units/{f['unit']}"),
        ("units", "API 单位 信用代码", f"/api/units?credit_code={f['credit_code']}"),
        ("units", "API 单位", "/api/units"),
        ("vehicles", "车辆", "/vehicles"),
        ("regions", "API 区划", "/api/regions"),
        ("devices", "设备 列表", "/devices"),
        ("devices", "设备 未落位", "/devices/unplaced"),
        ("devices", "设备 详情", f"/devices/{f['device']}"),
        ("devices", "API 设备", "/api/devices"),
        ("devices", "API 设备 离线", "/api/devices?status=offline"),
        ("devices", "API 设备 未落位", "/api/devices/unplaced"),
        ("devices", "API 设备 详情", f"/api/devices/{f['device']}"),
        ("captures", "抓拍 最新", "/viid/captures"),
        ("captures", "抓拍 人脸", "/viid/captures?kind=face"),
        ("captures", "抓拍 按时间", f"/viid/captures?start={day}&end={end}"),
        ("captures", "抓拍 按相机", f"/viid/captures?device={f['ape']}&{reason}"),
        ("captures", "抓拍 第20页", "/viid/captures?page=20"),
        ("captures", "采集设备 /viid/apes", "/viid/apes"),
        ("warnings", "预警 页面", "/warnings"),
        ("warnings", "预警 手机", "/m/warnings"),
        ("warnings", "API 预警", "/api/warnings"),
        ("warnings", "API 预警 新", "/api/warnings?state=new"),
        ("warnings", "API 预警 统计", "/api/warnings/stats"),
        ("warnings", "API 预警 详情", f"/api/warnings/{f['warning']}"),
        ("construction", "建设 /construction", "/construction"),
        ("construction", "建设 项目", "/construction/projects"),
        ("construction", "建设 推进", "/construction/rollout"),
        ("construction", "建设 六无", "/construction/liuwu"),
        ("construction", "大屏 /construction/dashboard", "/construction/dashboard"),
        ("construction", "API 大屏", "/api/construction/dashboard"),
        ("construction", "API 分级", "/api/construction/tiers"),
        ("construction", "API 在线率", "/api/construction/online-rates"),
        ("construction", "API 工单", "/api/construction/work-orders"),
        ("construction", "API 推进", "/api/construction/rollout"),
        ("construction", "API 六无", "/api/construction/liuwu"),
        ("construction", "API 验收", f"/api/construction/acceptance/{f['community']}"),
        ("construction", "API 存储", f"/api/construction/storage/{f['community']}"),
        ("circular", "通报 circular.xlsx", "/api/construction/circular.xlsx"),
        ("federation", "级联 /federation", "/federation"),
        ("federation", "API 级联 状态", "/api/federation/status"),
        ("federation", "API 级联 总览", "/api/federation/overview"),
        ("security", "安全 告警", "/security/alerts"),
        ("security", "安全 审批", "/security/approvals"),
        ("security", "安全 导出", "/security/exports"),
        ("security", "安全 追溯", "/security/trace"),
        ("security", "API 安全 告警", "/api/security/alerts"),
        ("security", "API 审批", "/api/security/approvals"),
        ("siting", "选址 /siting", "/siting"),
        ("doorplates", "门牌 /doorplates", "/doorplates"),
        ("video", "视频 目录树", "/api/video/tree"),
        ("iot", "物联 接入统计", "/api/iot/report"),
        ("ops", "监控 /metrics/prometheus", "/metrics/prometheus"),
    ]


class QueryCounter:
    """SQL statements sent to the database (an N+1 page shows up as dozens a request)."""

    def __init__(self, store: Store) -> None:
        self.n = 0
        event.listen(store.engine, "before_cursor_execute", self._count)

    def _count(self, *_args: object) -> None:
        self.n += 1


def measure(client: TestClient, url: str, n: int, budget: float) -> tuple[list[float], int]:
    t = time.perf_counter()
    r = client.get(url)
    first = time.perf_counter() - t
    status = r.status_code
    if first > budget:  # a page this slow: its one request is the figure (no cache would change it by 10x)
        return [first], status
    times: list[float] = []
    spent = first
    for _ in range(n):
        if times and spent > budget:
            break
        t = time.perf_counter()
        r = client.get(url)
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
        if r.status_code != 200:
            status = r.status_code
    return times or [first], status


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def run(db: str, scale: float, n: int, budget: float, only: str | None, roles: tuple[str, ...],
        pg_url: str, skip: dict[str, set[str]] | None = None, pg_db: str | None = None) -> list[dict]:
    settings = settings_for(db, scale, pg_url, pg_db)
    crypto.configure_from_settings(settings)
    store = Store(settings.database_url)
    from anfang.security.models import User

    with store.session() as s:
        area = s.scalar(select(User.police_area_id).where(User.username == "police"))
    f = fixtures(store, area)
    results = []
    queries = QueryCounter(store)
    app = create_app(settings, store)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for role in roles:
            client.cookies.clear()
            r = client.post("/api/auth/login", json={"username": role, "password": PASSWORD})
            r.raise_for_status()
            token = r.json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            # as a browser asks: /metrics answers the console page to HTML and the Prometheus text otherwise
            client.headers["Accept"] = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8"
            for area_name, name, url in pages(f):
                if only and only not in area_name and only not in url:
                    continue
                if skip and area_name in skip.get(role, set()):
                    continue
                q0 = queries.n
                times, status = measure(client, url, n, budget)
                per_request = (queries.n - q0) / (len(times) + 1)
                ms = [t * 1000 for t in times]
                row = {"db": db, "role": role, "area": area_name, "page": name, "url": url, "n": len(ms),
                       "p50": statistics.median(ms), "p95": p95(ms), "status": status,
                       "queries": round(per_request, 1)}
                row["pass"] = status == 200 and row["p95"] <= LIMIT_MS
                row["na"] = status == 403  # not this role's page (refused as it should be): not measured
                results.append(row)
                console.print(f"  {db} {role:7} {name:32} {row['p50']:9.1f} {row['p95']:9.1f} ms  {status}"
                              f"{'' if row['pass'] else '  FAIL'}")
    store.dispose()
    return results


def table(results: list[dict], title: str) -> Table:
    t = Table(title=title)
    for col in ("db", "role", "page", "url", "n", "SQL/req", "p50 ms", "p95 ms", "limit", "status", "result"):
        t.add_column(col, justify="left" if col in ("db", "role", "page", "url", "result") else "right")
    for r in sorted((r for r in results if not r.get("na")), key=lambda r: -r["p95"] if r["status"] == 200 else -1e9):
        t.add_row(r["db"], r["role"], r["page"], r["url"][:60], str(r["n"]), f"{r['queries']:g}",
                  f"{r['p50']:,.1f}", f"{r['p95']:,.1f}",
                  f"{LIMIT_MS:.0f}", str(r["status"]), "[green]PASS" if r["pass"] else "[red]FAIL")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=10, help="timed requests per page and role (after one warm-up)")
    ap.add_argument("--budget", type=float, default=8.0, help="stop timing a page after this many seconds")
    ap.add_argument("--only", default=None, help="only pages whose area or URL contains this")
    ap.add_argument("--roles", default=",".join(ROLES))
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--pg-db", default=None, help="PostgreSQL database (default anfang_city; a copy: anfang_city_m)")
    ap.add_argument("--tag", default="", help="suffix of the results file")
    ap.add_argument("--skip", action="append", default=[], metavar="ROLE:AREA,AREA",
                    help="leave out these areas for this role (e.g. county:home,metrics,construction)")
    args = ap.parse_args()
    skip = {role: set(areas.split(",")) for role, areas in (x.split(":", 1) for x in args.skip)}
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: list[dict] = []
    for db in dbs:
        results += run(db, args.scale, args.n, args.budget, args.only, tuple(args.roles.split(",")), args.pg_url,
                       skip, args.pg_db)
    failed = [r for r in results if not r["pass"] and not r.get("na")]
    refused = sorted({f"{r['role']} {r['url']}" for r in results if r.get("na")})
    console.print(table(results, f"页面与接口 / pages and APIs at scale {args.scale:g} (county {COUNTY}), "
                                 f"p95 limit {LIMIT_MS:.0f} ms — {len(results) - len(failed) - len(refused)} PASS, "
                                 f"{len(failed)} FAIL"))
    console.print(f"403 by role (not measured): {'; '.join(refused) or '—'}")
    path = save_results(f"pages_{args.db}_{tag_of(args.scale)}{'_' + args.tag if args.tag else ''}",
                        {"results": results})
    console.print(f"结果已保存 / saved: {path}")


if __name__ == "__main__":
    main()
