"""Numbers from the wire are ASCII digits only, and bounded (issue 17, item 4). ``str.isdigit`` accepts '²' (int()
then raises) and ``int`` accepts '٣' or '３' (silently a number): a fuzz over every place a number goes in SIP
headers, MANSCDP bodies and GA/T 1400 queries must end in a clean refusal — never an exception, never a number
read from non-ASCII digits; a VIID query number past its bounds is a 400 with the standard's status object."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from anfang.app import create_app
from anfang.gb28181.ids import GbIdError, parse_gb_id
from anfang.gb28181.manscdp.xml import catalog_items, parse_manscdp
from anfang.gb28181.server import GbServer
from anfang.gb28181.simulator import Simulator
from anfang.gb28181.sip.message import SipError, parse_message, uri_hostport
from anfang.gb28181.sip.transport import SipEndpoint
from anfang.store.engine import Store
from anfang.viid import ids as viid_ids
from test_gb28181_server import _config, _wait
from test_viid import assert_status_shape, hdr, make_settings, register

ODD_DIGITS = ["²", "٣", "３", "߁", "𝟗", "¹"]  # superscript, Arabic-Indic, full-width, NKo, math bold, superscript

SIP = ("MESSAGE sip:35040000002000000001@127.0.0.1:5060 SIP/2.0\r\n"
       "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1234;rport\r\n"
       "From: <sip:35040200001320000001@3504000000>;tag=77\r\n"
       "To: <sip:35040000002000000001@3504000000>\r\n"
       "Call-ID: 4711@127.0.0.1\r\nCSeq: 20 MESSAGE\r\nMax-Forwards: 70\r\nExpires: 3600\r\n"
       "Contact: <sip:35040200001320000001@127.0.0.1:5999>\r\nContent-Type: Application/MANSCDP+xml\r\n"
       "Content-Length: {n}\r\n\r\n{body}")
CATALOG = ('<?xml version="1.0" encoding="GB2312"?><Response><CmdType>Catalog</CmdType><SN>17</SN>'
           "<DeviceID>35040200001320000001</DeviceID><SumNum>2</SumNum><DeviceList Num=\"2\">"
           "<Item><DeviceID>35040200001310000001</DeviceID><Name>cam</Name><Port>5060</Port>"
           "<Longitude>117.63</Longitude><Latitude>26.26</Latitude><Parental>0</Parental></Item>"
           "<Item><DeviceID>35040200001310000002</DeviceID><Name>cam2</Name></Item></DeviceList></Response>")


def _variants(text: str) -> list[str]:
    """``text`` with each run of ASCII digits replaced (one digit, and the whole run) by each odd digit."""
    out = []
    for m in re.finditer(r"[0-9]+", text):
        for d in ODD_DIGITS:
            out.append(text[:m.start()] + d + text[m.start() + 1:])
            out.append(text[:m.start()] + d * len(m.group()) + text[m.end():])
    return out


def test_fuzz_sip_headers_with_non_ascii_digits() -> None:
    head = SIP.split("\r\n\r\n")[0]
    assert parse_message((SIP.format(n=0, body="")).encode()).cseq == (20, "MESSAGE")
    for variant in _variants(head):
        try:
            msg = parse_message((variant + "\r\n\r\n").encode())
        except SipError:
            continue  # a clean refusal (400 / 413 to the sender)
        number, _ = msg.cseq
        assert number in (0, 20) or str(number) in variant.split("CSeq:")[1][:12], variant
        if not (msg.get("cseq") or "").split()[0].isascii():
            assert number == 0
        for uri in (msg.get("contact") or "", msg.request_uri or ""):
            uri = uri.strip("<>")
            host, port = uri_hostport(uri)
            assert port is None or str(port) in uri
            if uri and not uri.rsplit(":", 1)[-1].split(">")[0].isascii():
                assert port is None
    for variant in _variants("SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"):
        try:
            msg = parse_message(variant.encode())
        except SipError:
            continue
        assert msg.status is None or msg.status == 200


def test_fuzz_manscdp_bodies_with_non_ascii_digits() -> None:
    total, items = catalog_items(parse_manscdp(CATALOG.encode("gb2312")))
    assert total == 2 and items[0]["type_code"] == "131" and items[0]["longitude"] == pytest.approx(117.63)
    for variant in _variants(CATALOG):
        doc = parse_manscdp(variant.encode("utf-8").replace(b"GB2312", b"UTF-8"))
        total, items = catalog_items(doc)  # never raises
        raw_sum = doc.get("SumNum") or ""
        assert total == (2 if raw_sum == "2" else None)
        for item in items:
            cid = item["channel_id"]
            assert item["type_code"] is None or cid.isascii()
            assert item["longitude"] is None or "117.63" in variant.split("<Longitude>")[1][:10]


def test_ids_and_times_refuse_non_ascii_digits() -> None:
    assert str(parse_gb_id("35040200001320000001")) == "35040200001320000001"
    for variant in _variants("35040200001320000001"):
        with pytest.raises(GbIdError):
            parse_gb_id(variant)
    assert viid_ids.parse_time("20261102100000") is not None
    for variant in _variants("20261102100000"):
        assert viid_ids.parse_time(variant) is None


def test_catalog_with_superscript_sumnum_is_handled_not_a_handler_crash(store: Store) -> None:
    async def scenario() -> int:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=1, heartbeat=5)
        try:
            await sim.start(keepalive=False)
            dev = sim.devices[0]
            assert await _wait(lambda: dev.registered)
            body = (CATALOG.replace("<SumNum>2</SumNum>", "<SumNum>²</SumNum>")
                    .replace("35040200001320000001", dev.device_id).replace("GB2312", "UTF-8"))
            resp = await sim.message(dev, body.encode())
            await asyncio.sleep(0.2)
            return resp.status or 0
        finally:
            await sim.stop()
            await server.stop()

    with capture_logs() as logs:
        assert asyncio.run(scenario()) == 200
    assert not [e for e in logs if e["event"] == "sip_handler_failed"]


def test_failed_sip_handler_logs_one_line_without_the_message() -> None:
    secret_body = "<Notify>SECRET-BODY-TEXT</Notify>"

    def broken(msg, peer) -> None:  # noqa: ANN001
        raise ValueError("handler bug")

    async def scenario() -> bytes:
        ep = SipEndpoint(broken, host="127.0.0.1", port=0, tcp=False)
        await ep.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        try:
            data = SIP.format(n=len(secret_body), body=secret_body).encode()
            sock.sendto(data, ("127.0.0.1", ep.port))
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), 2.0)
        finally:
            sock.close()
            await ep.stop()

    with capture_logs() as logs:
        answer = asyncio.run(scenario())
    assert answer.startswith(b"SIP/2.0 500")
    failed = [e for e in logs if e["event"] == "sip_handler_failed"]
    assert len(failed) == 1
    line = failed[0]
    assert line["method"] == "MESSAGE" and line["call_id"] == "4711@127.0.0.1"
    assert line["device_id"] == "35040200001320000001" and "handler bug" in line["error"]
    assert "exc_info" not in line and "SECRET-BODY-TEXT" not in repr(line)


# ---- GA/T 1400 query numbers --------------------------------------------------------------------------------------
@pytest.fixture
def viid_client(store: Store, db_url: str, tmp_path):
    with TestClient(create_app(make_settings(tmp_path, db_url), store)) as c:
        yield c


@pytest.mark.parametrize("path", ["/VIID/Faces", "/VIID/Images", "/VIID/MotorVehicles"])
def test_viid_query_numbers_out_of_bounds_are_400_with_status_object(viid_client: TestClient, path: str) -> None:
    c = viid_client
    assert register(c).status_code == 200
    for params in ({"RecordStartNo": "99999999999999999999"}, {"PageRecordNum": "99999999999999999999"},
                   {"RecordStartNo": "٣"}, {"PageRecordNum": "²"}, {"RecordStartNo": "-1"},
                   {"PageRecordNum": "0"}):
        r = c.get(path, params=params, headers=hdr())
        assert r.status_code == 400, (params, r.status_code, r.text[:200])
        status = r.json()["ResponseStatusObject"]
        assert_status_shape(status)
        assert status["StatusCode"] != 0
    ok = c.get(path, params={"RecordStartNo": "1", "PageRecordNum": "5"}, headers=hdr())
    assert ok.status_code == 200
