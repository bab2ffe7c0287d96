"""SIP parsing/serialisation, digest, MANSCDP decoding and 20-digit ids: every tolerance has a test."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anfang.gb28181.ids import GbIdError, make_gb_id, parse_gb_id
from anfang.gb28181.manscdp import catalog_items, parse_manscdp
from anfang.gb28181.sip import auth
from anfang.gb28181.sip.message import MAX_MESSAGE, SipError, SipMessage, StreamParser, decode_body, parse_message

REGISTER = (
    "REGISTER sip:35040000002000000001@3504000000 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1\r\n"
    "From: <sip:35040200001180000001@3504000000>;tag=abc\r\n"
    "To: <sip:35040200001180000001@3504000000>\r\n"
    "Call-ID: 1@192.168.1.64\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:35040200001180000001@192.168.1.64:5060>\r\n"
    "Max-Forwards: 70\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n\r\n"
)

CATALOG_XML = ('<?xml version="1.0" encoding="GB2312"?>\r\n<Response><CmdType>Catalog</CmdType><SN>7</SN>'
               '<DeviceID>35040200001180000001</DeviceID><SumNum>1</SumNum><DeviceList Num="1"><Item>'
               '<DeviceID>35040200001310000001</DeviceID><Name>三元区瑄园小区南门</Name><Status>ON</Status>'
               '</Item></DeviceList></Response>\r\n')


def _message(body: bytes, length: int | None = None) -> bytes:
    head = ("MESSAGE sip:35040000002000000001@3504000000 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2\r\nFrom: <sip:35040200001180000001@3504000000>;tag=1\r\n"
            "To: <sip:35040000002000000001@3504000000>\r\nCall-ID: 9\r\nCSeq: 20 MESSAGE\r\n"
            "Content-Type: Application/MANSCDP+xml\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n")
    return head.encode() + body


# ---- parsing tolerances ---------------------------------------------------------------------------------------
def test_register_parses_and_round_trips() -> None:
    msg = parse_message(REGISTER.encode())
    assert msg.method == "REGISTER" and msg.cseq == (1, "REGISTER") and msg.branch == "z9hG4bK1"
    assert msg.from_user == "35040200001180000001" and msg.from_tag == "abc"
    again = parse_message(msg.to_bytes())
    assert again.headers == msg.headers


def test_header_case_compact_forms_whitespace_lf_and_folding() -> None:
    raw = ("register sip:35040000002000000001@3504000000 SIP/2.0\n"
           "v:SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKx\n"
           "f :   <sip:35040200001180000001@3504000000>;tag=t\n"
           "T: <sip:35040200001180000001@3504000000>\n"
           "i: abc\n"
           "cseq:   2    REGISTER\n"
           "X-Long: first\n  second\n"
           "l: 0\n\n")
    msg = parse_message(("\r\n" + raw).encode())
    assert msg.method == "REGISTER" and msg.call_id == "abc" and msg.cseq == (2, "REGISTER")
    assert msg.get("VIA") == "SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKx"
    assert msg.get("x-long") == "first second"


def test_gb2312_body_decoded_by_declaration() -> None:
    body = CATALOG_XML.encode("gb18030")
    msg = parse_message(_message(body))
    total, items = catalog_items(parse_manscdp(msg.body, msg.get("content-type")))
    assert total == 1 and items[0]["name"] == "三元区瑄园小区南门" and items[0]["status"] == "online"


def test_declared_gb2312_but_utf8_sent_and_undeclared_gbk() -> None:
    utf8 = CATALOG_XML.encode("utf-8")
    assert "三元区瑄园小区南门" in decode_body(utf8)
    bare = CATALOG_XML.replace(' encoding="GB2312"', "").encode("gb18030")
    assert "三元区瑄园小区南门" in decode_body(bare)


def test_content_length_counting_characters_udp_and_tcp() -> None:
    body = CATALOG_XML.encode("gb18030")
    chars = len(CATALOG_XML)
    assert chars < len(body)
    msg = parse_message(_message(body, length=chars))
    assert msg.body == body
    parser = StreamParser()
    stream = _message(body, length=chars) + _message(body) + b"\r\n\r\n"
    out = []
    for i in range(0, len(stream), 7):  # arbitrary TCP segmentation
        out += parser.feed(stream[i:i + 7])
    assert [type(m) for m in out] == [SipMessage, SipMessage]
    assert all(parse_manscdp(m.body).cmd_type == "Catalog" for m in out)


def test_short_body_and_missing_headers_are_400_with_a_response() -> None:
    with pytest.raises(SipError) as err:
        parse_message(_message(b"<Notify><CmdType>Keep", length=200))
    assert err.value.status == 400 and err.value.partial is not None
    resp = err.value.partial.response(400)
    assert resp.status == 400 and resp.call_id == "9"
    with pytest.raises(SipError) as err:
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa\r\n\r\n")
    assert err.value.partial is not None  # can answer 400
    with pytest.raises(SipError) as err:
        parse_message(b"garbage\r\n\r\n")
    assert err.value.partial is None  # nothing to answer


def test_oversized_rejected() -> None:
    with pytest.raises(SipError) as err:
        parse_message(_message(b"<a>" + b"x" * MAX_MESSAGE + b"</a>"))
    assert err.value.status == 413
    parser = StreamParser()
    out = parser.feed(b"MESSAGE sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"y" * (MAX_MESSAGE + 10))
    assert isinstance(out[0], SipError) and out[0].status == 413


# ---- fuzzing -----------------------------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_message(data)
    for item in StreamParser().feed(data):
        assert isinstance(item, SipMessage | SipError)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(REGISTER)), st.binary(max_size=40), st.integers(0, len(REGISTER)))
def test_fuzz_mutated_register_never_crashes_and_answers_400(cut: int, junk: bytes, pos: int) -> None:
    raw = REGISTER.encode()
    mutated = raw[:pos] + junk + raw[pos:cut] if cut > pos else raw[:cut] + junk + raw[cut:]
    try:
        msg = parse_message(mutated)
    except SipError as exc:
        if exc.partial is not None:
            assert exc.partial.response(exc.status).to_bytes().startswith(b"SIP/2.0 4")
        return
    assert parse_message(msg.to_bytes()).method == msg.method


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_manscdp_bodies(text: str) -> None:
    for enc in ("utf-8", "gb18030"):
        try:
            doc = parse_manscdp(f'<?xml version="1.0" encoding="GB2312"?><Notify>{text}</Notify>'.encode(enc,
                                                                                                          "replace"))
            catalog_items(doc)
        except ValueError:
            pass


def test_server_endpoint_answers_400_to_garbage_over_udp() -> None:
    import asyncio

    from anfang.gb28181.sip.transport import SipEndpoint

    async def scenario() -> bytes:
        server = SipEndpoint(lambda m, p: None, host="127.0.0.1", port=0, tcp=False)
        await server.start()
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):  # noqa: ANN001
                if not got.done():
                    got.set_result(data)

        tr, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        tr.sendto(_message(b"<Notify>", length=999), ("127.0.0.1", server.port))
        try:
            return await asyncio.wait_for(got, 2)
        finally:
            tr.close()
            await server.stop()

    assert asyncio.run(scenario()).startswith(b"SIP/2.0 400")


# ---- digest ------------------------------------------------------------------------------------------------------
def _creds(nonce: str, *, qop: bool = True, uri: str = "sip:35040000002000000001@3504000000", nc: int = 1,
           password: str = "pw") -> dict[str, str]:
    header = auth.authorization_header({"realm": "3504000000", "nonce": nonce, "qop": "auth" if qop else ""},
                                       username="35040200001180000001", password=password, method="REGISTER",
                                       uri=uri, nc=nc)
    from anfang.gb28181.sip.message import parse_auth

    return parse_auth(header)


def test_digest_qop_rfc2069_and_differing_uri() -> None:
    store = auth.NonceStore()
    for kwargs in ({}, {"qop": False}, {"uri": "sip:3504000000"}):
        nonce = store.issue()
        creds = _creds(nonce, **kwargs)
        assert store.check(nonce, creds.get("qop"), creds.get("nc", "")) == "ok"
        assert auth.verify(creds, password="pw", realm="3504000000", method="REGISTER")
        assert not auth.verify(creds, password="other", realm="3504000000", method="REGISTER")


def test_nonce_replay_and_expiry() -> None:
    store = auth.NonceStore(ttl=60)
    nonce = store.issue()
    creds = _creds(nonce, qop=False)
    store.consume(nonce, None, "")
    assert store.check(nonce, None, "") in ("replay", "stale")  # RFC 2069 nonce: one use
    nonce = store.issue()
    store.consume(nonce, "auth", "00000001")
    assert store.check(nonce, "auth", "00000001") == "replay"
    assert store.check(nonce, "auth", "00000002") == "ok"
    old = auth.NonceStore(ttl=0.0)
    n2 = old.issue()
    import time

    time.sleep(0.01)
    assert old.check(n2, "auth", "00000001") == "stale"
    assert creds["response"]


# ---- ids ---------------------------------------------------------------------------------------------------------
def test_gb_ids() -> None:
    gid = parse_gb_id("35040200001320000012")
    assert gid.region == "350402" and gid.type_code == "132" and gid.type_name == "网络摄像机 IPC"
    assert gid.industry == "00" and gid.serial == "0000012" and gid.realm == "3504020000"
    assert parse_gb_id("35040000002000000001").type_name == "中心信令控制服务器"
    assert make_gb_id("350402", "118", 7) == "35040200001180000007"
    for bad in ("3504020000132000001", "3504020000132000001X", "00040200001320000012", ""):
        with pytest.raises(GbIdError):
            parse_gb_id(bad)
