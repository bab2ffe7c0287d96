"""SIP message parsing and serialisation, lenient where real devices deviate and strict where it is unsafe.

Tolerated: header names in any case and in compact form (``v``, ``f``, ``t``, ``i``, ``m``, ``l``, ``c`` ...),
spaces around the colon, LF instead of CRLF, folded header lines, leading blank lines (TCP keepalive pings), and a
``Content-Length`` that counts characters instead of bytes (GB2312 bodies with Chinese names). Rejected: messages
over ``MAX_MESSAGE`` bytes, more than ``MAX_HEADERS`` headers, a missing start line or mandatory header.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field

from anfang.core.ids import ascii_digits

MAX_MESSAGE = 65_535  # bytes: the largest UDP datagram; TCP messages are held to the same bound
MAX_HEADERS = 128

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
           "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event", "u": "allow-events",
           "r": "refer-to", "x": "session-expires"}
CANONICAL = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "via": "Via",
             "content-type": "Content-Type", "content-length": "Content-Length", "max-forwards": "Max-Forwards",
             "user-agent": "User-Agent", "subscription-state": "Subscription-State", "mime-version": "MIME-Version"}
MANDATORY = ("via", "from", "to", "call-id", "cseq")
REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
           415: "Unsupported Media Type", 423: "Interval Too Brief", 481: "Call/Transaction Does Not Exist",
           486: "Busy Here", 489: "Bad Event", 500: "Server Internal Error", 501: "Not Implemented",
           503: "Service Unavailable", 504: "Server Time-out"}

_REQUEST_RE = re.compile(r"^([A-Za-z]+)\s+(\S+)\s+SIP/2\.0\s*$", re.IGNORECASE)
_STATUS_RE = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$", re.IGNORECASE | re.ASCII)
_XML_ENC_RE = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_\-]+)[\"']", re.IGNORECASE)


_CANON_CACHE: dict[str, str] = {}


def canonical(name: str) -> str:
    """The canonical spelling of a header name (``call-id``, ``CALL-ID``, ``i`` → ``Call-ID``); memoised, with a
    bounded cache so that a flood of invented header names cannot grow it."""
    hit = _CANON_CACHE.get(name)
    if hit is not None:
        return hit
    low = name.strip().lower()
    low = COMPACT.get(low, low)
    out = CANONICAL.get(low) or "-".join(part.capitalize() for part in low.split("-"))
    if len(_CANON_CACHE) < 4096:
        _CANON_CACHE[name] = out
    return out


class SipError(Exception):
    """A message that cannot be accepted. ``status`` is the response to send (400, 413) when ``partial`` holds
    enough of the request to answer it; ``partial`` is None when no response is possible."""

    def __init__(self, message: str, status: int = 400, partial: SipMessage | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.partial = partial


@dataclass
class SipMessage:
    """A request (``method`` + ``uri``) or a response (``status`` + ``reason``); headers keep their order."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    # ---- headers
    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name)
        for k, v in self.headers:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        return [v for k, v in self.headers if k == key]

    def set(self, name: str, value: str) -> SipMessage:
        key = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != key]
        self.headers.append((key, value))
        return self

    def add(self, name: str, value: str) -> SipMessage:
        self.headers.append((canonical(name), value))
        return self

    def remove(self, name: str) -> None:
        key = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != key]

    # ---- convenient views
    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = (self.get("cseq") or "").split()
        if not raw or not ascii_digits(raw[0], 10):
            return 0, ""
        return int(raw[0]), (raw[1].upper() if len(raw) > 1 else "")

    @property
    def branch(self) -> str:
        via = self.get("via") or ""
        return header_params(via).get("branch", "")

    @property
    def from_user(self) -> str:
        return uri_user(name_addr_uri(self.get("from") or ""))

    @property
    def to_user(self) -> str:
        return uri_user(name_addr_uri(self.get("to") or ""))

    @property
    def from_tag(self) -> str:
        return header_params(self.get("from") or "").get("tag", "")

    @property
    def to_tag(self) -> str:
        return header_params(self.get("to") or "").get("tag", "")

    def text(self) -> str:
        """The body as text, decoded by its declared charset / XML encoding (see ``decode_body``)."""
        return decode_body(self.body, self.get("content-type"))

    # ---- serialisation
    def to_bytes(self) -> bytes:
        if self.is_request:
            first = f"{self.method} {self.uri} SIP/2.0"
        else:
            first = f"SIP/2.0 {self.status} {self.reason or REASONS.get(self.status or 0, '')}"
        lines = [first]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def response(self, status: int, reason: str = "", *, to_tag: str | None = None,
                 body: bytes = b"", content_type: str | None = None) -> SipMessage:
        """A response to this request: Via, From, To, Call-ID, CSeq copied. A To without a tag gets ``to_tag`` or,
        when none is given, a fresh one (RFC 3261 8.2.6.2: every response but 100 carries a To tag)."""
        resp = SipMessage(status=status, reason=reason or REASONS.get(status, ""))
        if to_tag is None and status > 100:
            to_tag = os.urandom(6).hex()
        for k, v in self.headers:
            if k in ("Via", "From", "Call-ID", "CSeq"):
                resp.headers.append((k, v))
            elif k == "To":
                if to_tag and "tag=" not in v.lower():
                    v = f"{v};tag={to_tag}"
                resp.headers.append((k, v))
        if body:
            resp.body = body
            if content_type:
                resp.set("Content-Type", content_type)
        return resp


# ---- helpers for header values ----------------------------------------------------------------------------------
def header_params(value: str) -> dict[str, str]:
    """``;name=value`` parameters after the address part (quotes stripped, names lower-cased)."""
    tail = value.rsplit(">", 1)[1] if ">" in value else value
    out: dict[str, str] = {}
    for part in tail.split(";")[1:]:
        name, _, val = part.partition("=")
        out[name.strip().lower()] = val.strip().strip('"')
    return out


def name_addr_uri(value: str) -> str:
    """The URI of a From/To/Contact value: inside <...> or up to the first ';'."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1:value.index(">")].strip()
    return value.split(";", 1)[0].strip()


def uri_user(uri: str) -> str:
    """``sip:user@host:port;params`` → ``user`` (empty when the URI has no user part)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


def uri_hostport(uri: str) -> tuple[str, int | None]:
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
    rest = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    host, _, port = rest.partition(":")
    return host, int(port) if ascii_digits(port, 5) else None


def parse_auth(value: str) -> dict[str, str]:
    """``Digest k=v, k="v"`` → dict (keys lower-cased). Commas inside quotes are kept."""
    value = value.strip()
    if value[:6].lower() == "digest":
        value = value[6:]
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)', value):
        v = m.group(2)
        out[m.group(1).lower()] = v[1:-1] if v.startswith('"') and v.endswith('"') and len(v) >= 2 else v
    return out


# ---- body decoding ------------------------------------------------------------------------------------------------
def _known_codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # GB2312 is a subset of GBK ⊂ GB18030; devices that declare GB2312 often send GBK characters (e.g. 瑄).
    return "gb18030" if info.name in ("gb2312", "gbk", "gb18030", "euc_cn") else info.name


def decode_body(body: bytes, content_type: str | None = None) -> str:
    """Decode by the XML declaration's encoding, else the Content-Type charset, else UTF-8; when the declared one
    fails, try UTF-8 then GB18030 (devices often declare GB2312 but send UTF-8, or declare nothing)."""
    declared: list[str] = []
    m = _XML_ENC_RE.search(body[:200])
    if m:
        declared.append(m.group(1).decode("ascii"))
    if content_type and "charset=" in content_type.lower():
        declared.append(content_type.lower().split("charset=", 1)[1].split(";")[0].strip().strip('"'))
    tried: list[str] = []
    for name in [*declared, "utf-8", "gb18030"]:
        codec = _known_codec(name)
        if codec is None or codec in tried:
            continue
        tried.append(codec)
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    return body.decode("gb18030", errors="replace")


# ---- parsing --------------------------------------------------------------------------------------------------------
def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep):]
    return None


def _parse_head(head: bytes) -> SipMessage:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("gb18030", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    msg = SipMessage()
    m = _REQUEST_RE.match(first)
    if m:
        msg.method, msg.uri = m.group(1).upper(), m.group(2)
    else:
        m2 = _STATUS_RE.match(first)
        if not m2:
            raise SipError(f"bad start line: {first[:80]!r}", partial=None)
        msg.status, msg.reason = int(m2.group(1)), (m2.group(2) or "").strip()
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and msg.headers:  # folded continuation
            k, v = msg.headers[-1]
            msg.headers[-1] = (k, f"{v} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise SipError(f"bad header line: {line[:80]!r}", partial=msg if msg.is_request else None)
        msg.headers.append((canonical(name), value.strip()))
        if len(msg.headers) > MAX_HEADERS:
            raise SipError("too many headers", status=413, partial=msg if msg.is_request else None)
    return msg


_ROOT_RE = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.:\-]*)")


def _xml_complete(body: bytes) -> bool:
    """True for a non-XML body, or XML whose root element is closed at the end."""
    stripped = body.strip()
    if not stripped.startswith(b"<"):
        return True
    m = _ROOT_RE.search(stripped)
    if m is None:
        return stripped.endswith(b">")
    return stripped.endswith(b"</" + m.group(1) + b">") or (stripped.endswith(b"/>") and stripped.count(b"<") <= 2)


def _chars_to_bytes(data: bytes, chars: int) -> int | None:
    """Byte length of the first ``chars`` characters of ``data`` in the first multi-byte encoding that decodes
    it (GB18030, UTF-8); None when ``data`` is too short."""
    for codec in ("gb18030", "utf-8"):
        dec = codecs.getincrementaldecoder(codec)(errors="strict")
        count = 0
        try:
            for i in range(len(data)):
                count += len(dec.decode(data[i:i + 1]))
                if count >= chars:
                    if _xml_complete(data[:i + 1]):
                        return i + 1
                    break
        except UnicodeDecodeError:
            continue
    return None


def _content_length(msg: SipMessage) -> int | None:
    raw = msg.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not ascii_digits(raw, 7):
        raise SipError(f"bad Content-Length {raw[:20]!r}", partial=msg if msg.is_request else None)
    return int(raw)


def _check(msg: SipMessage) -> SipMessage:
    missing = [h for h in MANDATORY if msg.get(h) is None]
    if missing:
        raise SipError(f"missing headers: {', '.join(missing)}", partial=msg if msg.is_request else None)
    number, method = msg.cseq
    if not method or number < 0 or number >= 2**31:
        raise SipError("bad CSeq", partial=msg if msg.is_request else None)
    if msg.is_request and method != msg.method and not (msg.method == "ACK" and method == "INVITE"):
        raise SipError("CSeq method differs from the request method", partial=msg)
    return msg


def parse_message(data: bytes) -> SipMessage:
    """Parse one complete message (a UDP datagram). The body is what follows the blank line, cut to
    Content-Length when that is consistent; a character-counting Content-Length is tolerated."""
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}", status=413, partial=None)
    data = data.lstrip(b"\r\n")
    parts = _split_head(data)
    if parts is None:
        head, rest = data, b""
    else:
        head, rest = parts
    msg = _parse_head(head)
    length = _content_length(msg)
    if length is None or length == len(rest):
        msg.body = rest
    elif length < len(rest):
        cut = rest[:length]
        # a character count is shorter than the byte count when the body holds Chinese text
        msg.body = cut if _xml_complete(cut) else rest
    else:
        if not _xml_complete(rest) or not rest.strip():
            raise SipError("body shorter than Content-Length", partial=msg if msg.is_request else None)
        msg.body = rest  # counted characters or a wrong count; the XML is whole
    return _check(msg)


class StreamParser:
    """Frames messages on a TCP stream by Content-Length (with the character-count tolerance)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.buf = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> list[SipMessage | SipError]:
        """Add received bytes; returns the complete messages (or errors) framed so far. A SipError with status
        413 or without a header end within the limit means the stream is unusable and should be closed."""
        self.buf += data
        out: list[SipMessage | SipError] = []
        while True:
            # RFC 5626 keepalive pings: bare CRLFs between messages
            while self.buf[:2] == b"\r\n" or self.buf[:1] == b"\n":
                del self.buf[:2 if self.buf[:2] == b"\r\n" else 1]
            if not self.buf:
                return out
            idx = self.buf.find(b"\r\n\r\n")
            sep = 4
            if idx < 0:
                idx, sep = self.buf.find(b"\n\n"), 2
            if idx < 0:
                if len(self.buf) > self.max_message:
                    out.append(SipError("header section too large", status=413))
                    self.buf.clear()
                return out
            head = bytes(self.buf[:idx])
            try:
                msg = _parse_head(head)
                length = _content_length(msg) or 0
            except SipError as exc:
                out.append(exc)
                del self.buf[:idx + sep]
                continue
            if idx + sep + length > self.max_message:
                out.append(SipError("message too large", status=413, partial=msg if msg.is_request else None))
                self.buf.clear()
                return out
            start = idx + sep
            if len(self.buf) < start + length:
                return out
            body = bytes(self.buf[start:start + length])
            if not _xml_complete(body):
                real = _chars_to_bytes(bytes(self.buf[start:start + length * 4]), length)
                if real is None:
                    if len(self.buf) - start >= length * 4:  # not a character count either: take as sent
                        real = length
                    else:
                        return out  # wait for more bytes
                body = bytes(self.buf[start:start + real])
                length = real
            del self.buf[:start + length]
            msg.body = body
            try:
                out.append(_check(msg))
            except SipError as exc:
                out.append(exc)
