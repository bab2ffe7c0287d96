"""Media nodes in other processes (scale-out): announcements over NATS, control over signed HTTP.

Each ``anfang media`` process publishes its announcement (id, URL, streams, viewers, inbound bytes, CPU, and each
stream's state) every ``interval`` seconds on ``<prefix>.nodes``, and the end of every viewing on
``<prefix>.views``; both are HMAC-signed with the shared media secret. The console (beside the SIP server)
listens, keeps the live nodes in its ``NodeDirectory`` and gives each new stream to the least-loaded one; it asks a
node to prepare / answer / close a stream over HTTP (``/media/api/...``), each request signed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import structlog

from anfang.media import tokens

log = structlog.get_logger(__name__)
SIGNATURE = "x-anfang-media-signature"
MAX_SKEW = 60.0


def sign(secret: bytes, payload: bytes, now: float | None = None) -> str:
    ts = str(int(now if now is not None else time.time()))
    mac = hmac.new(secret, ts.encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"{ts}.{mac}"


def check(secret: bytes, payload: bytes, signature: str | None) -> bool:
    if not signature or "." not in signature:
        return False
    ts, mac = signature.split(".", 1)
    if not ts.isascii() or not ts.isdigit() or abs(time.time() - int(ts)) > MAX_SKEW:
        return False
    good = hmac.new(secret, ts.encode() + b"." + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, good)


def seal(secret: bytes, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps({"sig": sign(secret, payload), "body": payload.decode()}, ensure_ascii=False).encode()


def unseal(secret: bytes, data: bytes) -> dict[str, Any] | None:
    try:
        outer = json.loads(data)
        payload = outer["body"].encode()
        if not check(secret, payload, outer["sig"]):
            return None
        return json.loads(payload)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class RemoteNode:
    """A media node in another process, as the controller sees it."""

    def __init__(self, announcement: dict[str, Any], secret: bytes) -> None:
        self.node_id = str(announcement["node_id"])
        self.url = str(announcement["url"]).rstrip("/")
        self.secret = secret
        self.announcement = announcement
        self.client = httpx.AsyncClient(base_url=self.url, timeout=5.0)
        self._pending: dict[str, dict[str, Any]] = {}  # streams prepared since the last announcement

    def update(self, announcement: dict[str, Any]) -> None:
        self.announcement = announcement
        self.url = str(announcement["url"]).rstrip("/")
        known = {s["key"] for s in announcement.get("stream_info", [])}
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if k not in known and now - v["at"] < 15}

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        r = await self.client.post(path, content=payload, headers={SIGNATURE: sign(self.secret, payload),
                                                                   "content-type": "application/json"})
        r.raise_for_status()
        return r.json()

    async def prepare(self, key: str, channel_id: str, *, ssrc: int | None, transport: str,
                      name: str = "") -> dict[str, Any]:
        out = await self._post("/media/api/prepare", {"key": key, "channel_id": channel_id, "ssrc": ssrc,
                                                      "transport": transport, "name": name})
        self._pending[key] = {"at": time.monotonic()}
        return out

    async def answer(self, key: str, *, hosts: list[str], ssrc: int | None,
                     connect: tuple[str, int] | None) -> None:
        await self._post("/media/api/answer", {"key": key, "hosts": hosts, "ssrc": ssrc,
                                               "connect": list(connect) if connect else None})

    async def close(self, key: str) -> None:
        self._pending.pop(key, None)
        with contextlib.suppress(httpx.HTTPError):
            await self._post("/media/api/close", {"key": key})

    async def snapshot(self, key: str) -> bytes:
        payload = json.dumps({"key": key}).encode()
        r = await self.client.post("/media/api/snapshot", content=payload, timeout=15.0,
                                   headers={SIGNATURE: sign(self.secret, payload)})
        if r.status_code != 200:
            raise ValueError(r.text[:200])
        return r.content

    def stream_info(self, key: str) -> dict[str, Any] | None:
        for info in self.announcement.get("stream_info", []):
            if info["key"] == key:
                return info
        if key in self._pending:  # prepared, not yet announced: still starting
            return {"key": key, "state": "waiting", "viewers": 0, "idle_for": None}
        return None

    def load(self) -> tuple[int, int]:
        return (int(self.announcement.get("streams", 0)) + len(self._pending),
                int(self.announcement.get("viewers", 0)))


class Announcer:
    """Runs in a media node process: publishes its announcement and the end of each viewing on NATS."""

    def __init__(self, node: Any, nats_url: str, secret: bytes, prefix: str = "anfang.media",
                 interval: float = 2.0) -> None:
        self.node, self.nats_url, self.secret, self.prefix, self.interval = node, nats_url, secret, prefix, interval
        self.nc: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        import nats

        self.nc = await nats.connect(self.nats_url, name=f"anfang-media-{self.node.config.node_id}",
                                     max_reconnect_attempts=-1)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.nc.publish(f"{self.prefix}.nodes", seal(self.secret, self.node.announcement()))
            await asyncio.sleep(self.interval)

    async def view_ended(self, claims: tokens.StreamClaims, start: float, end: float, channel_id: str) -> None:
        body = {"stream": claims.stream, "channel_id": channel_id, "user": claims.user, "role": claims.role,
                "user_id": claims.user_id, "view": claims.view, "start": start, "end": end}
        with contextlib.suppress(Exception):
            await self.nc.publish(f"{self.prefix}.views", seal(self.secret, body))
            await self.nc.flush(timeout=2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()


class Listener:
    """Runs beside the controller: keeps the announced nodes in the directory, records their viewers' audit."""

    def __init__(self, directory: Any, nats_url: str, secret: bytes, on_view_end: Any,
                 prefix: str = "anfang.media", local_ids: set[str] | None = None) -> None:
        self.directory, self.nats_url, self.secret = directory, nats_url, secret
        self.on_view_end, self.prefix = on_view_end, prefix
        self.local_ids = local_ids or set()
        self.nc: Any = None

    async def start(self) -> None:
        import nats

        self.nc = await nats.connect(self.nats_url, name="anfang-media-controller", max_reconnect_attempts=-1)
        await self.nc.subscribe(f"{self.prefix}.nodes", cb=self._node)
        await self.nc.subscribe(f"{self.prefix}.views", cb=self._view)

    async def _node(self, msg: Any) -> None:
        ann = unseal(self.secret, msg.data)
        if ann is None or not ann.get("url") or ann.get("node_id") in self.local_ids:
            return
        handle = self.directory.nodes.get(ann["node_id"])
        if isinstance(handle, RemoteNode):
            handle.update(ann)
            self.directory.seen[handle.node_id] = time.monotonic()
        else:
            self.directory.add(RemoteNode(ann, self.secret), local=False)
            log.info("media_node_joined", node=ann["node_id"], url=ann["url"])

    async def _view(self, msg: Any) -> None:
        body = unseal(self.secret, msg.data)
        if body is None:
            return
        claims = tokens.StreamClaims(body["stream"], body["channel_id"], body["user"], body["role"],
                                     body.get("user_id"), 0.0, body.get("view", ""))
        with contextlib.suppress(Exception):
            await self.on_view_end(claims, float(body["start"]), float(body["end"]), body["channel_id"])

    async def stop(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
