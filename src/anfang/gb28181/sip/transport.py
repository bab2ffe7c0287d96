"""One SIP endpoint over UDP and TCP (asyncio), with the transaction layer GB/T 28181 needs.

- Server transactions: a retransmitted request (same branch, CSeq and source) gets the cached response again and
  is not handled twice; the cache lives 32 s (64·T1), in two rotating generations so that purging is O(1).
- Client transactions: ``request()`` sends, retransmits over UDP (T1 = 0.5 s doubling to T2 = 4 s) and returns the
  final response, or raises ``TimeoutError`` (64·T1 by default; queries pass a shorter one).
- TCP: messages are framed by Content-Length (``StreamParser``), the device's connection is kept and reused for
  requests to it (devices behind NAT are reachable only that way).

The handler is a plain function called for every request: the hot paths (REGISTER, keepalive) answer without
creating a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from anfang.gb28181.sip.message import MAX_MESSAGE, SipError, SipMessage, StreamParser, parse_message

log = structlog.get_logger(__name__)

T1, T2 = 0.5, 4.0
TX_LIFETIME = 64 * T1


@dataclass(eq=False)
class TcpConn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    addr: tuple[str, int]
    closed: bool = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)


@dataclass(eq=False)
class Peer:
    transport: str  # "UDP" | "TCP"
    addr: tuple[str, int]
    conn: TcpConn | None = None

    @property
    def usable(self) -> bool:
        return self.transport == "UDP" or (self.conn is not None and not self.conn.closed)


@dataclass(eq=False)
class _ClientTx:
    future: asyncio.Future[SipMessage]
    data: bytes
    peer: Peer
    interval: float = T1
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


Handler = Callable[[SipMessage, Peer], None]


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint._received(data, Peer("UDP", (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: the device is gone
        log.debug("sip_udp_error", error=str(exc))


class SipEndpoint:
    """Listens on UDP and/or TCP, calls ``handler`` for each request, matches responses to ``request()``."""

    def __init__(self, handler: Handler, *, host: str = "0.0.0.0", port: int = 5060, udp: bool = True,
                 tcp: bool = True, advertised_host: str | None = None, user_agent: str = "anfang") -> None:
        self.handler = handler
        self.host, self.port, self.use_udp, self.use_tcp = host, port, udp, tcp
        self.advertised_host = advertised_host
        self.user_agent = user_agent
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self._client_tx: dict[tuple[str, str], _ClientTx] = {}
        self._server_tx: list[dict[tuple, bytes | None]] = [{}, {}]
        self._rotated = time.monotonic()
        self._conns: set[TcpConn] = set()
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"received": 0, "bad": 0, "retransmits_in": 0, "retransmits_out": 0}
        # called with ("in" | "out", message, peer) for every message when set (the per-device SIP trace)
        self.tracer: Callable[[str, SipMessage, Peer], None] | None = None

    # ---- lifecycle
    async def start(self) -> None:
        """Bind UDP and TCP on the same port; with port 0, retry until a port is free for both."""
        wanted = self.port
        for attempt in range(20):
            try:
                await self._bind(wanted)
                return
            except OSError:
                if self.udp is not None:
                    self.udp.close()
                    self.udp = None
                if wanted != 0 or attempt == 19:
                    raise
        raise OSError("no free port")

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.port = port
        if self.use_udp:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, port))
            self.udp = transport  # type: ignore[assignment]
            sock = transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                import socket

                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
            self.port = transport.get_extra_info("sockname")[1]
        if self.use_tcp:
            self.tcp_server = await asyncio.start_server(self._tcp_accept, self.host, self.port)
            self.port = self.tcp_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for tx in list(self._client_tx.values()):
            self._finish(tx)
            if not tx.future.done():
                tx.future.cancel()
        self._client_tx.clear()
        if self.udp is not None:
            self.udp.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
        for conn in list(self._conns):
            conn.closed = True
            conn.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self.tcp_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp_server.wait_closed(), 2)

    @property
    def local_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    # ---- TCP
    async def _tcp_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        await self._tcp_loop(TcpConn(reader, writer, (peername[0], peername[1])))

    async def connect(self, host: str, port: int) -> Peer:
        """An outgoing TCP connection whose incoming messages are handled like the server's."""
        reader, writer = await asyncio.open_connection(host, port)
        conn = TcpConn(reader, writer, (host, port))
        task = asyncio.get_running_loop().create_task(self._tcp_loop(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Peer("TCP", (host, port), conn)

    async def _tcp_loop(self, conn: TcpConn) -> None:
        self._conns.add(conn)
        parser = StreamParser()
        peer = Peer("TCP", conn.addr, conn)
        try:
            while True:
                data = await conn.reader.read(65536)
                if not data:
                    break
                for item in parser.feed(data):
                    if isinstance(item, SipError):
                        self._bad(item, peer)
                        if item.status == 413:
                            return
                    else:
                        self._dispatch(item, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.closed = True
            self._conns.discard(conn)
            with contextlib.suppress(Exception):
                conn.writer.close()

    # ---- receiving
    def _received(self, data: bytes, peer: Peer) -> None:
        if not data.strip():
            return  # keepalive ping
        try:
            msg = parse_message(data)
        except SipError as exc:
            self._bad(exc, peer)
            return
        except Exception:  # noqa: BLE001 - the parser is fuzzed; this is the last line of defence
            log.exception("sip_parse_crash")
            self.stats["bad"] += 1
            return
        self._dispatch(msg, peer)

    def _bad(self, exc: SipError, peer: Peer) -> None:
        self.stats["bad"] += 1
        log.debug("sip_bad_message", error=str(exc), peer=peer.addr)
        if exc.partial is not None:
            self._trace("in", exc.partial, peer)
        if exc.partial is not None and exc.partial.is_request and exc.partial.method != "ACK":
            self.send(exc.partial.response(exc.status, str(exc)[:60].replace("\r", " ").replace("\n", " ")), peer)

    def _trace(self, direction: str, msg: SipMessage, peer: Peer) -> None:
        if self.tracer is not None:
            try:
                self.tracer(direction, msg, peer)
            except Exception:  # noqa: BLE001 - a diagnostic must never break signalling
                log.exception("sip_trace_failed")

    def _dispatch(self, msg: SipMessage, peer: Peer) -> None:
        self.stats["received"] += 1
        self._trace("in", msg, peer)
        if not msg.is_request:
            tx = self._client_tx.get((msg.branch, msg.cseq[1]))
            if tx is not None and (msg.status or 0) >= 200:
                self._finish(tx)
                self._client_tx.pop((msg.branch, msg.cseq[1]), None)
                if not tx.future.done():
                    tx.future.set_result(msg)
            return
        if msg.method == "ACK":
            self._call(msg, peer)
            return
        key = (msg.branch or msg.call_id, msg.cseq, peer.addr)
        now = time.monotonic()
        if now - self._rotated > TX_LIFETIME:
            self._server_tx = [{}, self._server_tx[0]]
            self._rotated = now
        for gen in self._server_tx:
            if key in gen:
                self.stats["retransmits_in"] += 1
                cached = gen[key]
                if cached is not None:
                    self._write(cached, peer)
                return
        self._server_tx[0][key] = None
        self._call(msg, peer)

    def _call(self, msg: SipMessage, peer: Peer) -> None:
        try:
            self.handler(msg, peer)
        except Exception as exc:  # noqa: BLE001 - one bad handler run must not stop the endpoint
            # one line: no traceback, whose rendering (locals) would put the whole message, headers and body, in
            # the log; the method, Call-ID, device and error are enough to find it
            log.error("sip_handler_failed", method=msg.method, call_id=msg.call_id[:100],
                      device_id=msg.from_user[:40], peer=peer.addr, error=f"{type(exc).__name__}: {exc}"[:300])
            if msg.method != "ACK":
                self.reply(msg, msg.response(500), peer)

    # ---- sending
    def _write(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "TCP":
            if peer.conn is not None:
                peer.conn.write(data)
        elif self.udp is not None:
            self.udp.sendto(data, peer.addr)

    def send(self, msg: SipMessage, peer: Peer) -> None:
        if msg.get("user-agent") is None and self.user_agent:
            msg.add("User-Agent", self.user_agent)
        data = msg.to_bytes()
        if len(data) > MAX_MESSAGE:
            raise SipError("outgoing message too large", status=413)
        self._trace("out", msg, peer)
        self._write(data, peer)

    def reply(self, request: SipMessage, response: SipMessage, peer: Peer) -> None:
        """Send a response and remember it for retransmissions of ``request``."""
        if response.get("user-agent") is None and self.user_agent:
            response.add("User-Agent", self.user_agent)
        data = response.to_bytes()
        if (response.status or 0) >= 200:
            key = (request.branch or request.call_id, request.cseq, peer.addr)
            self._server_tx[0][key] = data
        self._trace("out", response, peer)
        self._write(data, peer)

    def via(self, transport: str) -> str:
        return f"SIP/2.0/{transport} {self.local_host}:{self.port};rport;branch={new_branch()}"

    def build_request(self, method: str, uri: str, *, from_uri: str, to_uri: str, transport: str = "UDP",
                      call_id: str | None = None, cseq: int = 1, from_tag: str | None = None,
                      to_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
                      extra: list[tuple[str, str]] | None = None) -> SipMessage:
        msg = SipMessage(method=method, uri=uri)
        msg.add("Via", self.via(transport))
        msg.add("From", f"<{from_uri}>;tag={from_tag or new_tag()}")
        msg.add("To", f"<{to_uri}>" + (f";tag={to_tag}" if to_tag else ""))
        msg.add("Call-ID", call_id or f"{os.urandom(10).hex()}@{self.local_host}")
        msg.add("CSeq", f"{cseq} {method}")
        msg.add("Max-Forwards", "70")
        for k, v in extra or []:
            msg.add(k, v)
        if body:
            msg.body = body
            msg.add("Content-Type", content_type or "Application/MANSCDP+xml")
        return msg

    def request(self, msg: SipMessage, peer: Peer, timeout: float = TX_LIFETIME) -> asyncio.Future[SipMessage]:
        """Send ``msg`` in a client transaction; the future resolves to the final response or TimeoutError."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[SipMessage] = loop.create_future()
        if msg.get("user-agent") is None and self.user_agent:
            msg.add("User-Agent", self.user_agent)
        data = msg.to_bytes()
        key = (msg.branch, msg.cseq[1])
        tx = _ClientTx(fut, data, peer)
        self._client_tx[key] = tx
        self._trace("out", msg, peer)
        self._write(data, peer)
        if peer.transport == "UDP":
            tx.timers.append(loop.call_later(T1, self._retransmit, tx))
        tx.timers.append(loop.call_later(timeout, self._timeout, key, tx))
        return fut

    def _retransmit(self, tx: _ClientTx) -> None:
        if tx.future.done():
            return
        self.stats["retransmits_out"] += 1
        self._write(tx.data, tx.peer)
        tx.interval = min(tx.interval * 2, T2)
        tx.timers.append(asyncio.get_running_loop().call_later(tx.interval, self._retransmit, tx))

    def _timeout(self, key: tuple[str, str], tx: _ClientTx) -> None:
        self._finish(tx)
        self._client_tx.pop(key, None)
        if not tx.future.done():
            tx.future.set_exception(TimeoutError("no response"))

    @staticmethod
    def _finish(tx: _ClientTx) -> None:
        for timer in tx.timers:
            timer.cancel()
        tx.timers.clear()
