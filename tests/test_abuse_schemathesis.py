"""Schemathesis against the app's whole OpenAPI, in-process, as an administrator and as low-privilege roles.

Every operation gets a bounded number of generated requests (valid and invalid: wrong types, missing fields, odd
strings), sent through Starlette's TestClient with the role's session. Checks: no 5xx, and every documented response
(including the 422 error object) matches its schema. Hypothesis is derandomised: a run is repeatable and CI cannot
turn red by chance. The device-facing /api/iot operation runs with the registered door's key. /VIID (no OpenAPI of
its own: GA/T 1400 is its contract) and GB/T 28181 (SIP, not HTTP) are fuzzed in tests/test_injection.py.

Size: ``ANFANG_SCHEMATHESIS_EXAMPLES`` (default 10) examples per operation and role; every role on SQLite, the
administrator on PostgreSQL too (the other roles' PostgreSQL half is skipped for run time).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from abuse import IOT_DEVICE, IOT_KEY, AbuseApp, abuse_app, module_db, scratch_app
from anfang.viid.simulator import face, face_list, make_jpeg

EXAMPLES = int(os.environ.get("ANFANG_SCHEMATHESIS_EXAMPLES", "10"))
# Long-lived streams never end on their own: exercised by the authorisation matrix (status and headers only).
STREAMING = {"/api/warnings/stream"}
ROLES = ("city_admin", "grid_worker", "resident")
_RENDERED: dict[tuple[str, str, str], int] = {}
APE = "35040400001190000099"
JPEG = make_jpeg(2_000, seed=9)

with scratch_app() as _app:
    _spec = _app.openapi()
schema = schemathesis.openapi.from_dict(_spec)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbuseApp]:
    """One world per backend for the whole module: generated writes accumulate, as they would in production."""
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    with module_db(request.param, tmp) as url, abuse_app(url, tmp) as a:
        yield a


def _httpx_files(kwargs: dict[str, Any]) -> None:
    """Negative examples put numbers or objects where a multipart file goes; httpx (unlike requests) cannot encode
    those, so they are sent as their text — the server still sees a malformed upload."""
    files = kwargs.get("files")
    if not files:
        return
    items = files.items() if isinstance(files, dict) else files
    fixed = []
    for name, value in items:
        if isinstance(value, tuple):
            value = tuple(v if isinstance(v, bytes | str) or v is None else json.dumps(v) for v in value)
        elif not isinstance(value, bytes | str):
            value = json.dumps(value).encode()
        fixed.append((name, value))
    kwargs["files"] = fixed


@pytest.mark.parametrize("role", ROLES)
@schema.exclude(path=list(STREAMING)).parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_openapi_operations(case: schemathesis.Case, role: str, api: AbuseApp) -> None:
    if api.backend == "postgresql" and role != "city_admin":
        pytest.skip("on PostgreSQL only the administrator's run (run time); all roles run on SQLite")
    if case.path.endswith(".pdf"):
        key = (api.backend, role, case.path)
        _RENDERED[key] = _RENDERED.get(key, 0) + 1
        if _RENDERED[key] > 2:
            return  # a PDF rendering takes seconds: two per role and backend are enough for its parameters
    headers = api.headers(role)
    if case.path.startswith("/api/iot/"):
        headers = {**headers, "X-Device-Key": IOT_KEY}
        if case.path_parameters and "device_id" in case.path_parameters and case.path_parameters.get("kind") == "door":
            case.path_parameters["device_id"] = IOT_DEVICE
    if case.path == "/api/auth/logout":
        headers = {}  # a fuzzed logout must not close the role's session for the rest of the run
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    kwargs.pop("cookies", None)
    _httpx_files(kwargs)
    response = api.client.request(**kwargs)
    response.request.read()  # multipart bodies are streamed: the checks read the request back
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance],
                           headers=headers)


# ---- device-facing endpoints without an OpenAPI: GA/T 1400 (/VIID) and MANSCDP (GB/T 28181) -------------------
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=24)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=12), inner, max_size=3), max_leaves=10)
_VIID_POSTS = ["/VIID/Faces", "/VIID/MotorVehicles", "/VIID/Persons", "/VIID/NonMotorVehicles", "/VIID/Images",
               "/VIID/APEs", "/VIID/Subscribes", "/VIID/Dispositions", "/VIID/SubscribeNotifications",
               "/VIID/DispositionNotifications", "/VIID/System/Keepalive", "/VIID/System/UnRegister"]
_VIID_GETS = ["/VIID/Faces", "/VIID/MotorVehicles", "/VIID/Persons", "/VIID/NonMotorVehicles", "/VIID/Images",
              "/VIID/APEs", "/VIID/Subscribes", "/VIID/Dispositions"]
_FACE_FIELDS = ["FaceID", "SourceID", "DeviceID", "ShotTime", "LocationMarkTime", "GenderCode", "LeftTopX", "InfoKind",
                "SubImageList"]


def _ape_headers(api: AbuseApp, ape: str) -> dict[str, str]:
    r = api.client.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": ape}}),
                        headers={"Content-Type": "application/VIID+JSON"},
                        auth=httpx.DigestAuth(ape, api.app.state.settings.viid_password))
    assert r.status_code == 200, r.text
    return {"User-Identify": ape, "Content-Type": "application/VIID+JSON;charset=UTF-8"}


def _viid_reply_ok(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        assert "ResponseStatusObject" in r.json(), r.text[:300]


@settings(max_examples=EXAMPLES * 5, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(_VIID_POSTS), body=_json, field=st.sampled_from(_FACE_FIELDS), value=_json,
       raw=st.binary(max_size=64))
def test_viid_device_posts(api: AbuseApp, path: str, body: Any, field: str, value: Any, raw: bytes) -> None:
    """A registered APE posting malformed, mistyped and oversized objects gets a GA/T 1400 status, never a 5xx."""
    hdr = _ape_headers(api, APE) if not api.client.app.state.viid.sessions.is_fresh(APE) else \
        {"User-Identify": APE, "Content-Type": "application/VIID+JSON;charset=UTF-8"}
    if path == "/VIID/System/UnRegister":
        body = {"UnRegisterObject": {"DeviceID": "35040400001190000098"}}  # another device: refused, session kept
    obj = face(APE, JPEG)
    obj[field] = value
    for content in (json.dumps(body).encode(), json.dumps(face_list([obj])).encode(), raw):  # ints past 64 bits too
        _viid_reply_ok(api.client.post(path, headers=hdr, content=content))


@settings(max_examples=EXAMPLES * 3, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(_VIID_GETS), params=st.dictionaries(
    st.sampled_from(["Face.DeviceID", "MotorVehicle.PlateNo", "Face.ShotTime", "PageRecordNum", "RecordStartNo",
                     "Face.FaceID", "Face.GenderCode", "MotorVehicle.ShotTime"]),
    st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str), max_size=3))
def test_viid_device_queries(api: AbuseApp, path: str, params: dict[str, str]) -> None:
    hdr = _ape_headers(api, APE) if not api.client.app.state.viid.sessions.is_fresh(APE) else {"User-Identify": APE}
    _viid_reply_ok(api.client.get(path, headers=hdr, params=params))


@settings(max_examples=EXAMPLES * 10, derandomize=True, deadline=None, database=None)
@given(root=st.sampled_from(["Notify", "Response", "Query", "Control", "x"]), cmd=st.text(max_size=12),
       inner=st.text(max_size=60), raw=st.binary(max_size=120))
def test_manscdp_parser_only_raises_its_error(root: str, cmd: str, inner: str, raw: bytes) -> None:
    """GB/T 28181 MANSCDP bodies from the network: parsed or refused with ManscdpError, nothing else."""
    from anfang.gb28181.manscdp import parse_manscdp
    from anfang.gb28181.manscdp.xml import ManscdpError

    doc = f"<?xml version=\"1.0\" encoding=\"GB2312\"?><{root}><CmdType>{cmd}</CmdType>{inner}</{root}>"
    for body in (doc.encode("utf-8", "surrogatepass"), raw, doc.encode("utf-8", "surrogatepass")[: len(raw)]):
        with contextlib.suppress(ManscdpError):
            parse_manscdp(body, "Application/MANSCDP+xml")
