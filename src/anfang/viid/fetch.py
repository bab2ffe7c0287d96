"""Sub-images sent by URL only (``StoragePath`` on the device, no ``Data``): fetched before the record is stored,
so it is stored with its image and matched like any other capture.

Server-side request forgery is the risk: the URL is whatever the client wrote. A URL is fetched only when its host
is the address the request came from — the registered device or lower platform itself (an IP literal equal to the
client address, or a name whose every address is the client address); never another host, never a redirect, no
proxy from the environment. Each image: at most ``max_bytes`` (streamed, cut off past the limit), 5 s per attempt,
3 attempts on connection errors and 429/5xx (0.2 s, 0.4 s back-off), all of one request's images within 10 s. An
image that cannot be fetched is refused alone and said so in the ResponseStatusList; the record is kept."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from anfang.viid.images import BadImage, CheckedImage, check_image

ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 5.0
BUDGET_S = 10.0
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class FetchRefused(Exception):
    """The URL is not the client's own host, or the image could not be fetched / is no image."""


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=ATTEMPT_TIMEOUT_S,
                             limits=httpx.Limits(max_connections=20, max_keepalive_connections=5))


async def check_url(url: str, client_ip: str) -> None:
    """Raise FetchRefused unless ``url`` is http(s) on the client's own address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise FetchRefused("只接受 http(s) 图片地址 / only http(s) image URLs")
    try:
        client = ipaddress.ip_address(client_ip)
    except ValueError:
        raise FetchRefused("无法确认请求来源地址 / unknown client address") from None
    try:
        addresses = {ipaddress.ip_address(parts.hostname)}
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 80,
                                                                 type=socket.SOCK_STREAM)
        except OSError:
            raise FetchRefused(f"无法解析 / cannot resolve {parts.hostname}") from None
        addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    if not addresses or addresses != {client}:
        raise FetchRefused(f"图片地址不是设备本机 {client_ip}，拒绝获取 / URL host is not the device's own address")


async def fetch_image(http: httpx.AsyncClient, url: str, client_ip: str, max_bytes: int) -> CheckedImage:
    await check_url(url, client_ip)
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(0.2 * 2 ** (attempt - 1))
        try:
            async with http.stream("GET", url) as resp:
                if resp.status_code in RETRY_STATUS:
                    last = f"HTTP {resp.status_code}"
                    continue
                if resp.status_code != 200:
                    raise FetchRefused(f"HTTP {resp.status_code}")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchRefused(f"图片超过 {max_bytes} 字节 / image larger than {max_bytes} bytes")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise FetchRefused(f"图片超过 {max_bytes} 字节 / image larger than {max_bytes} bytes")
        except httpx.TransportError as exc:
            last = type(exc).__name__
            continue
        try:
            return check_image(bytes(buf), max_bytes=max_bytes)
        except BadImage as exc:
            raise FetchRefused(str(exc)) from None
    raise FetchRefused(f"获取失败（{ATTEMPTS} 次）/ fetch failed: {last}")


def url_only_images(p: Any) -> list[dict[str, Any]]:
    """The sub-image metadata of a prepared object that has a URL and no data."""
    sub = (p.body or {}).get("SubImageList") or {}
    items = sub.get("SubImageInfoObject") if isinstance(sub, dict) else None
    have = {id(meta) for meta, _ in p.images}
    return [m for m in items or [] if isinstance(m, dict) and id(m) not in have
            and str(m.get("StoragePath") or "").lower().startswith(("http://", "https://"))]


async def fetch_missing(prepared: list[Any], client_ip: str, max_bytes: int, http: httpx.AsyncClient) -> int:
    """Fetch every URL-only sub-image of ``prepared`` into it (or list it in ``refused``); returns how many."""
    jobs = [(p, meta) for p in prepared for meta in url_only_images(p)]
    if not jobs:
        return 0

    async def one(p: Any, meta: dict[str, Any]) -> bool:
        url = str(meta["StoragePath"])
        try:
            img = await fetch_image(http, url, client_ip, max_bytes)
        except FetchRefused as exc:
            p.refused.append((str(meta.get("ImageID") or p.object_id), f"{url[:120]}: {exc}"))
            return False
        from anfang.viid import ids

        if ids.parse_time(meta.get("ShotTime")) is None:
            meta["ShotTime"] = ids.format_time(p.shot_at)
        meta.setdefault("DeviceID", p.device_id)
        meta["SourceURL"] = url[:256]
        meta["StoragePath"] = f"/VIID/Images/{meta.get('ImageID')}/Data"
        meta["FileFormat"] = meta.get("FileFormat") or img.format
        if img.width and not meta.get("Width"):
            meta["Width"], meta["Height"] = img.width, img.height
        p.images.append((meta, img))
        return True

    tasks = [asyncio.ensure_future(one(p, m)) for p, m in jobs]
    done, pending = await asyncio.wait(tasks, timeout=BUDGET_S)
    for t in pending:
        t.cancel()
    for (p, meta), t in zip(jobs, tasks, strict=True):
        if t in pending:
            p.refused.append((str(meta.get("ImageID") or p.object_id), "获取超时 / fetch timed out"))
    return sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
