"""Cascade upward: this 视图库 registers (HTTP digest) with its upper 视图库 and keeps alive; the upper then
subscribes to us through ``/VIID/Subscribes`` (accepted because ``viid_upper_id`` is trusted) and our
``SubscriptionService`` pushes to its ReceiveAddr. When the upper is unreachable or forgets us (401), we register
again with backoff; deliveries wait in the subscription's cursor meanwhile, so nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import structlog

from anfang.viid import ids
from anfang.viid.schemas import MEDIA_TYPE, statuses_of

log = structlog.get_logger(__name__)


class CascadeClient:
    def __init__(self, node: Any) -> None:
        self.node = node
        s = node.settings
        self.base = (s.viid_upper_url or "").rstrip("/")
        self.me = s.viid_server_id
        self.password = s.viid_upper_password or s.viid_password
        self.keepalive_every = max(s.viid_keepalive_timeout / 3, 0.5)
        self.registered = False
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": MEDIA_TYPE, "User-Identify": self.me}

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10.0)
        self._task = asyncio.create_task(self._run(), name="viid-cascade")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.post(f"{self.base}/VIID/System/UnRegister", headers=self._headers(),
                                        content=orjson.dumps({"UnRegisterObject": {"DeviceID": self.me}}))
            await self._client.aclose()

    async def register(self) -> bool:
        assert self._client is not None
        resp = await self._client.post(f"{self.base}/VIID/System/Register", headers=self._headers(),
                                       content=orjson.dumps({"RegisterObject": {"DeviceID": self.me}}),
                                       auth=httpx.DigestAuth(self.me, self.password))
        ok = resp.status_code == 200 and all(s.StatusCode == 0 for s in statuses_of(resp.json()))
        log.info("viid_cascade_register", upper=self.base, ok=ok, status=resp.status_code)
        return ok

    async def keepalive(self) -> bool:
        assert self._client is not None
        resp = await self._client.post(f"{self.base}/VIID/System/Keepalive", headers=self._headers(),
                                       content=orjson.dumps({"KeepaliveObject": {"DeviceID": self.me}}))
        return resp.status_code == 200

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                if not self.registered or self.node.reregister_upper:
                    self.node.reregister_upper = False
                    self.registered = await self.register()
                else:
                    self.registered = await self.keepalive()
            except httpx.HTTPError as exc:
                log.info("viid_cascade_unreachable", upper=self.base, error=type(exc).__name__)
                self.registered = False
            if self.registered:
                backoff = 1.0
                await asyncio.sleep(self.keepalive_every)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


async def subscribe_lower(lower_url: str, my_id: str, receive_addr: str, subscribe_id: str, *,
                          detail: str = "12,13", report_interval: int = 0, title: str = "上级订阅",
                          client: httpx.AsyncClient | None = None) -> list[Any]:
    """As an upper 视图库: ask a lower one (registered with us) to push ``detail`` to ``receive_addr``."""
    body = {"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": subscribe_id, "Title": title, "SubscribeDetail": detail,
        "ResourceURI": my_id, "ApplicantName": "anfang", "ApplicantOrg": "anfang", "BeginTime": ids.format_time(),
        "EndTime": "20991231235959", "ReceiveAddr": receive_addr, "ReportInterval": report_interval,
        "Reason": "级联 / cascade", "OperateType": 0}]}}
    own = client is None
    client = client or httpx.AsyncClient(timeout=10.0)
    try:
        resp = await client.post(f"{lower_url.rstrip('/')}/VIID/Subscribes", content=orjson.dumps(body),
                                 headers={"Content-Type": MEDIA_TYPE, "User-Identify": my_id})
        return statuses_of(resp.json())
    finally:
        if own:
            await client.aclose()
