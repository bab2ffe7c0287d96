"""The live-video controller: one shared stream per channel, started on demand, ended after the last viewer.

It sits beside the SIP server (it needs the device's dialog) and never touches media: for the first viewer of a
channel it picks the least-loaded media node, asks it for a receiver, INVITEs the device with that address (SDP
``y=`` SSRC per GB/T 28181), hands the device's answer to the node and returns where the browser connects.
Further viewers join the same stream. When a stream has had no viewer for ``linger`` seconds, or failed, the
controller sends BYE and closes it on the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from anfang.media import sdp

log = structlog.get_logger(__name__)


class VideoError(Exception):
    """Why a stream cannot be opened, with the HTTP status and a zh-CN / English message for the viewer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class NodeHandle(Protocol):
    node_id: str
    url: str

    async def prepare(self, key: str, channel_id: str, *, ssrc: int | None, transport: str,
                      name: str = "") -> dict[str, Any]: ...

    async def answer(self, key: str, *, hosts: list[str], ssrc: int | None,
                     connect: tuple[str, int] | None) -> None: ...

    async def close(self, key: str) -> None: ...

    def stream_info(self, key: str) -> dict[str, Any] | None: ...

    def load(self) -> tuple[int, int]: ...

    async def snapshot(self, key: str) -> bytes: ...


class LocalNode:
    """A media node in this process."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.node_id = node.config.node_id
        self.url = node.config.public_url

    async def prepare(self, key: str, channel_id: str, *, ssrc: int | None, transport: str,
                      name: str = "") -> dict[str, Any]:
        return await self.node.prepare(key, channel_id, ssrc=ssrc, transport=transport, name=name)

    async def answer(self, key: str, *, hosts: list[str], ssrc: int | None,
                     connect: tuple[str, int] | None) -> None:
        await self.node.answer(key, hosts=hosts, ssrc=ssrc, connect=connect)

    async def close(self, key: str) -> None:
        await self.node.close(key)

    def stream_info(self, key: str) -> dict[str, Any] | None:
        return self.node.stream_info(key)

    def load(self) -> tuple[int, int]:
        return len(self.node.streams), sum(len(s.viewers) for s in self.node.streams.values())

    async def snapshot(self, key: str) -> bytes:
        return await self.node.snapshot(key)


class NodeDirectory:
    """The media nodes that can take a stream: local ones, and remote ones known from their announcements."""

    def __init__(self, expire: float = 10.0) -> None:
        self.nodes: dict[str, NodeHandle] = {}
        self.seen: dict[str, float] = {}
        self.expire = expire

    def add(self, handle: NodeHandle, local: bool = True) -> None:
        self.nodes[handle.node_id] = handle
        self.seen[handle.node_id] = float("inf") if local else time.monotonic()

    def alive(self) -> list[NodeHandle]:
        now = time.monotonic()
        return [n for nid, n in self.nodes.items() if now - self.seen.get(nid, 0) <= self.expire]

    def pick(self) -> NodeHandle:
        nodes = self.alive()
        if not nodes:
            raise VideoError(503, "no_media_node", "没有可用的流媒体节点 / no media node is available")
        return min(nodes, key=lambda n: n.load())


@dataclass(eq=False)
class Session:
    channel_id: str
    device_id: str
    key: str
    node: NodeHandle
    ssrc: str
    name: str = ""
    dialog: dict[str, Any] | None = None
    created: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: VideoError | None = None


async def invite_to_node(gb: Any, node: NodeHandle, key: str, channel_id: str, device_id: str, *, ssrc: str,
                         transport: str, timeout: float, name: str = "", **offer: Any) -> dict[str, Any]:
    """Open a receiver on ``node``, INVITE the device with its address (``offer``: subject, start, end, speed for
    recordings), hand the device's SDP answer (address, SSRC, TCP port) to the node; returns the SIP dialog.
    Whatever fails closes the receiver (and the dialog) and raises VideoError with the viewer's message."""
    try:
        where = await node.prepare(key, channel_id, ssrc=int(ssrc), transport=transport, name=name)
    except Exception as exc:
        log.warning("media_prepare_failed", node=node.node_id, error=str(exc)[:200])
        raise VideoError(503, "media_node_failed", "流媒体节点不可用 / the media node failed") from exc
    cfg = gb.config
    body = sdp.build_offer(server_id=cfg.server_id, ip=where["ip"], port=where["port"], transport=transport,
                           ssrc=ssrc, channel_id=channel_id, **offer)
    try:
        resp, dialog = await gb.invite(device_id, channel_id, body, subject=f"{channel_id}:{ssrc},{cfg.server_id}:0",
                                       timeout=timeout)
    except (TimeoutError, LookupError) as exc:
        await node.close(key)
        raise VideoError(504, "device_timeout", "设备未应答视频请求 / the device did not answer") from exc
    if dialog is None:
        await node.close(key)
        raise VideoError(502, "device_refused",
                         f"设备拒绝视频请求（{resp.status}） / the device refused ({resp.status})")
    try:
        answer = sdp.parse(resp.body or b"")
        await node.answer(key, hosts=[answer.host, dialog["peer"].addr[0]],
                          ssrc=int(answer.ssrc) if answer.ssrc else int(ssrc),
                          connect=(answer.host, answer.port) if transport == "TCP-active" else None)
    except Exception as exc:  # noqa: BLE001 - a bad answer or an unreachable TCP port ends this session
        with contextlib.suppress(Exception):
            await gb.bye(dialog, timeout=2.0)
        await node.close(key)
        raise VideoError(502, "bad_answer", "设备的媒体应答无效 / the device's media answer is unusable") from exc
    return dialog


class LiveController:
    def __init__(self, gb: Any, nodes: NodeDirectory, *, transport: str = "UDP", linger: float = 15.0,
                 invite_timeout: float = 8.0) -> None:
        self.gb = gb  # anfang.gb28181.server.GbServer
        self.nodes = nodes
        self.transport = transport  # UDP | TCP-passive | TCP-active (per-device override: attributes)
        self.linger = linger
        self.invite_timeout = invite_timeout
        self.sessions: dict[str, Session] = {}
        self._serial = itertools.count(1)
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task | None = None
        self.invites = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._reap(), name="media-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(self._end(s, "shutdown") for s in list(self.sessions.values())))

    async def open(self, channel_id: str, device_id: str, *, name: str = "",
                   transport: str | None = None) -> Session:
        """The stream of a channel, INVITEd now if nobody watches it yet."""
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        async with lock:
            session = self.sessions.get(channel_id)
            if session is not None:
                info = session.node.stream_info(session.key)
                if info is not None and info["state"] in ("waiting", "playing"):
                    return session
                await self._end(session, "stale")
            return await self._invite(channel_id, device_id, name, transport or self.transport)

    async def _invite(self, channel_id: str, device_id: str, name: str, transport: str) -> Session:
        st = self.gb.devices.get(device_id)
        if st is None or st.peer is None or not st.registered or st.status != "online":
            raise VideoError(503, "device_offline", "设备离线，无法调阅视频 / the device is offline")
        node = self.nodes.pick()
        cfg = self.gb.config
        ssrc = sdp.ssrc_for(cfg.realm, next(self._serial))
        key = f"live-{channel_id}-{ssrc}"
        session = Session(channel_id, device_id, key, node, ssrc, name)
        self.invites += 1
        session.dialog = await invite_to_node(self.gb, node, key, channel_id, device_id, ssrc=ssrc,
                                              transport=transport, timeout=self.invite_timeout, name=name)
        self.sessions[channel_id] = session
        log.info("media_stream_started", channel=channel_id, device=device_id, node=node.node_id, ssrc=ssrc)
        return session

    async def _bye(self, session: Session) -> None:
        if session.dialog is not None:
            dialog, session.dialog = session.dialog, None
            with contextlib.suppress(Exception):
                await self.gb.bye(dialog, timeout=2.0)

    async def _end(self, session: Session, reason: str) -> None:
        if self.sessions.get(session.channel_id) is session:
            del self.sessions[session.channel_id]
        await self._bye(session)
        with contextlib.suppress(Exception):
            await session.node.close(session.key)
        log.info("media_stream_ended", channel=session.channel_id, reason=reason)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                info = session.node.stream_info(session.key)
                if info is None:
                    await self._end(session, "gone")
                elif info["state"] in ("failed", "closed"):
                    # keep a failed stream a moment so its viewers read the message, then end the dialog
                    if info["viewers"] == 0 or now - session.created > 30:
                        await self._end(session, info["state"])
                elif info["viewers"] == 0 and (info["idle_for"] or 0) >= self.linger:
                    await self._end(session, "idle")
