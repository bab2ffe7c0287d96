"""Console pages of live video: the 监控中心 wall (1/4/9/16 tiles filled from the user's channel tree)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from anfang.core.errors import Forbidden
from anfang.security.views import CurrentPrincipal

_T = {
    "wall": ("监控中心", "Monitoring centre"), "channels": ("通道", "Channels"), "layout": ("分屏", "Layout"),
    "search": ("搜索通道", "Search channels"), "empty_tile": ("点击左侧通道播放", "Pick a channel on the left"),
    "connecting": ("连接中…", "Connecting…"), "playing": ("播放中", "Playing"), "waiting": ("等待视频…",
                                                                                     "Waiting for video…"),
    "reconnecting": ("重新连接…", "Reconnecting…"), "closed": ("已结束", "Ended"), "snapshot": ("抓图", "Snapshot"),
    "close": ("关闭", "Close"), "online": ("在线", "online"), "offline": ("离线", "offline"),
    "no_channels": ("辖区内暂无视频通道", "No video channel in your jurisdiction"),
    "live": ("实时视频", "Live video"), "linked": ("联动视频", "Linked camera"), "tz": ("北京时间", "Beijing time"),
    "disabled": ("视频服务未启用（需启用 GB/T 28181 信令）", "Video is not enabled (needs the GB/T 28181 server)"),
    "fullscreen": ("全屏", "Full screen"), "no_linked": ("未找到联动摄像机", "No linked camera"),
}


def labels(lang: str) -> dict[str, str]:
    i = 0 if lang.startswith("zh") else 1
    return {k: v[i] for k, v in _T.items()}


def mount(app: FastAPI) -> None:
    from anfang.media.views import VIEWERS
    from anfang.web.views import ConsoleRoute, lang_of, render

    pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    @pages.get("/video/wall")
    async def wall(request: Request, p: CurrentPrincipal, layout: int = 4) -> HTMLResponse:
        if p.role not in VIEWERS:
            raise Forbidden("无权调阅视频 / not allowed to watch video")
        layout = layout if layout in (1, 4, 9, 16) else 4
        v = labels(lang_of(request))
        enabled = getattr(request.app.state, "live", None) is not None
        return await run_in_threadpool(render, request, "video_wall.html", p, nav="video_wall", V=v,
                                       layout=layout, enabled=enabled)

    app.include_router(pages)


def player_labels(request: Request) -> dict[str, Any]:
    from anfang.web.views import lang_of

    return labels(lang_of(request))
