"""The two ways a batch travels up: HTTPS push to the parent's ingest API (httpx; node authentication by HMAC
request signing, TLS and optional client certificates from files) and NATS JetStream (nats-py; one stream per
receiving node, ``ANFANG_FED_<node>``, drained by that node's durable consumer)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator
from typing import Any, Protocol

import httpx
import nats
import orjson
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from anfang.federation.links import ParentLink
from anfang.federation.schema import MIN_SCHEMA, SCHEMA, SCHEMA_HEADER, SchemaMismatch, check_schema
from anfang.federation.service import AuthError, FederationService, signed_headers, verify

log = structlog.get_logger(__name__)
INGEST_PATH = "/api/federation/ingest"


class Rejected(Exception):
    """The parent refused the batch for a reason other than the schema (authentication, validation)."""


class Transport(Protocol):
    connected: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, body: bytes, msg_id: str) -> None:
        """Deliver one batch; returns once the other side acknowledged it (stored)."""


class HmacAuth(httpx.Auth):
    """Signs every request body with the node credential (see service.sign)."""

    requires_request_body = True

    def __init__(self, node: str, secret: str) -> None:
        self.node, self.secret = node, secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(signed_headers(self.secret, self.node, request.content))
        yield request


def client_ssl(link: ParentLink) -> ssl.SSLContext | bool:
    if not (link.ca_file or link.cert_file):
        return True
    ctx = ssl.create_default_context(cafile=link.ca_file) if link.ca_file else ssl.create_default_context()
    if link.cert_file:
        ctx.load_cert_chain(link.cert_file, link.key_file)
    return ctx


class HttpsTransport:
    def __init__(self, link: ParentLink, node_id: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not link.url:
            raise ValueError(f"parent {link.node_id}: transport https needs url")
        self.link, self.node_id, self.timeout = link, node_id, timeout
        self._transport = transport  # tests: httpx.ASGITransport(parent_app)
        self.client: httpx.AsyncClient | None = None
        self.connected = False

    async def start(self) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(base_url=self.link.url, auth=HmacAuth(self.node_id, self.link.secret),
                                            verify=client_ssl(self.link), timeout=self.timeout,
                                            transport=self._transport)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def probe(self) -> None:
        """With nothing to send: is the parent reachable? (keeps the uplink's 'connected' true to life)"""
        assert self.client is not None
        try:
            self.connected = (await self.client.get("/healthz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            self.connected = False

    async def send(self, body: bytes, msg_id: str) -> None:
        assert self.client is not None
        try:
            r = await self.client.post(INGEST_PATH, content=body, headers={
                "content-type": "application/json", SCHEMA_HEADER: str(SCHEMA), "X-Anfang-Batch": msg_id})
        except httpx.TransportError:
            self.connected = False
            raise
        self.connected = r.status_code < 500
        if r.status_code == 426:
            raise SchemaMismatch(_message(r))
        if 400 <= r.status_code < 500:
            raise Rejected(f"{r.status_code}: {_message(r)}")
        r.raise_for_status()


def _code(r: httpx.Response) -> str:
    with contextlib.suppress(Exception):
        return str(r.json()["error"]["code"])
    return ""


def _message(r: httpx.Response) -> str:
    with contextlib.suppress(Exception):
        return str(r.json()["error"]["message"])
    return r.text[:300]


# -- NATS JetStream ----------------------------------------------------------------------------------------------
def stream_name(node: str) -> str:
    return f"ANFANG_FED_{node}"


def data_subject(parent: str, sender: str) -> str:
    return f"anfang.fed.{parent}.in.{sender}"


def hello_subject(parent: str) -> str:
    return f"anfang.fedhello.{parent}"


async def ensure_stream(js: Any, node: str) -> None:
    """The receiving node's stream, made by whichever side comes first (a child can push while its parent is
    down: the stream keeps the batches until the parent's durable consumer takes them)."""
    config = StreamConfig(name=stream_name(node), subjects=[f"anfang.fed.{node}.>"], storage=StorageType.FILE,
                          duplicate_window=120, max_age=30 * 86400)
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        with contextlib.suppress(BadRequestError):  # created meanwhile by the other side
            await js.add_stream(config)


async def connect(url: str, name: str) -> Any:
    quiet = [False]  # one line per outage, not one per reconnect attempt (an outage may last days)

    async def on_error(exc: Exception) -> None:  # nats-py prints a traceback per failed reconnect otherwise
        if not quiet[0]:
            quiet[0] = True
            log.warning("fed_nats_unreachable", name=name, error=repr(exc)[:200])

    async def on_disconnect() -> None:
        log.warning("fed_nats_disconnected", name=name)

    async def on_reconnect() -> None:
        quiet[0] = False
        log.info("fed_nats_reconnected", name=name)

    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              connect_timeout=2, allow_reconnect=True, error_cb=on_error,
                              disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)


class NatsTransport:
    def __init__(self, link: ParentLink, node_id: str, nats_url: str | None) -> None:
        self.link, self.node_id = link, node_id
        self.url = link.nats_url or nats_url
        if not self.url:
            raise ValueError(f"parent {link.node_id}: transport nats needs nats_url")
        self.nc: Any = None
        self.js: Any = None
        self._hello_ok = False

    @property
    def connected(self) -> bool:
        return bool(self.nc is not None and self.nc.is_connected)

    @property
    def max_bytes(self) -> int:
        """The server's largest message (nats-server max_payload, 1 MB unless configured)."""
        return int(getattr(self.nc, "max_payload", 0) or 1 << 20)

    async def start(self) -> None:
        if self.nc is None:
            self.nc = await connect(self.url, f"anfang-fwd-{self.node_id}")
            self.js = self.nc.jetstream(timeout=5)
        await ensure_stream(self.js, self.link.node_id)

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None

    async def hello(self) -> None:
        """Ask the parent (when it runs) which schemas it reads; refuse to send what it cannot read."""
        try:
            r = await self.nc.request(hello_subject(self.link.node_id), orjson.dumps(
                {"node": self.node_id, "schema": SCHEMA}), timeout=1.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return  # parent not running: the stream holds the data; it checks each batch's schema itself
        reply = orjson.loads(r.data)
        if reply.get("error"):
            raise SchemaMismatch(reply["error"])
        self._hello_ok = True

    async def send(self, body: bytes, msg_id: str) -> None:
        if not self._hello_ok:
            await self.hello()
        headers = {"Nats-Msg-Id": msg_id, SCHEMA_HEADER: str(SCHEMA),
                   **signed_headers(self.link.secret, self.node_id, body)}
        await self.js.publish(data_subject(self.link.node_id, self.node_id), body, headers=headers, timeout=5)


class NatsReceiver:
    """The parent side of the NATS transport: a durable pull consumer on this node's stream applies each batch
    and acknowledges it only once committed; a batch it cannot read (schema, signature) stays in the stream."""

    def __init__(self, service: FederationService, url: str, *, fetch: int = 8) -> None:
        self.service, self.url, self.fetch = service, url, fetch
        self.node = service.node_id
        self.nc: Any = None
        self._task: asyncio.Task | None = None
        self.applied = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fed-nats-receiver")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _on_hello(self, msg: Any) -> None:
        try:
            raw = orjson.loads(msg.data)
            check_schema(raw.get("schema"), me=self.node, sender=str(raw.get("node")))
            await msg.respond(orjson.dumps({"schema_min": MIN_SCHEMA, "schema_max": SCHEMA}))
        except SchemaMismatch as exc:
            await asyncio.to_thread(self.service.record_rejection, str(raw.get("node")), exc.message, exc.theirs)
            await msg.respond(orjson.dumps({"error": exc.message, "schema_min": MIN_SCHEMA, "schema_max": SCHEMA}))

    async def _connect(self) -> Any:
        if self.nc is not None:  # a half-made earlier attempt
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = await connect(self.url, f"anfang-ingest-{self.node}")
        js = self.nc.jetstream(timeout=5)
        await ensure_stream(js, self.node)
        await self.nc.subscribe(hello_subject(self.node), cb=self._on_hello)
        cfg = ConsumerConfig(durable_name=f"ingest_{self.node}", ack_policy=AckPolicy.EXPLICIT,
                             deliver_policy=DeliverPolicy.ALL, ack_wait=10, max_ack_pending=64)
        return await js.pull_subscribe(f"anfang.fed.{self.node}.>", durable=f"ingest_{self.node}",
                                       stream=stream_name(self.node), config=cfg)

    async def _run(self) -> None:
        psub = None
        while True:
            try:
                if psub is None:
                    psub = await self._connect()
                try:
                    msgs = await psub.fetch(self.fetch, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - server gone: reconnect and resume from the durable consumer
                log.warning("fed_nats_receiver_error", error=repr(exc))
                await asyncio.sleep(0.5)
                if psub is None or (self.nc is not None and self.nc.is_closed):
                    psub = None  # connect again (closing what is left of the old connection)

    async def _handle(self, msg: Any) -> None:
        headers = msg.headers or {}
        sender = headers.get("X-Anfang-Node", "?")
        try:
            verify(self.service.children, headers, msg.data)
            batch = self.service.parse(msg.data, headers.get(SCHEMA_HEADER), sender)
        except (AuthError, SchemaMismatch) as exc:
            text = exc.message if isinstance(exc, SchemaMismatch) else str(exc)
            log.warning("fed_nats_batch_refused", sender=sender, reason=text)
            await asyncio.to_thread(self.service.record_rejection, sender, text)
            await msg.nak(delay=30)  # kept in the stream, untouched, until the node is upgraded / re-keyed
            return
        except Exception:  # noqa: BLE001 - malformed: never applicable, but kept for inspection
            log.exception("fed_nats_bad_batch", sender=sender)
            await msg.term()
            return
        await asyncio.to_thread(self.service.apply, batch, sender)
        await msg.ack()
        self.applied += len(batch.items)
