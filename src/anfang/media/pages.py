"""Console pages of video: the 监控中心 wall (1/4/9/16 tiles filled from the user's channel tree), one channel live,
and a channel's recordings."""

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
    "playback": ("录像回放", "Playback"), "date": ("日期", "Date"), "pause": ("暂停", "Pause"),
    "resume": ("继续", "Resume"), "speed": ("倍速", "Speed"), "position": ("播放位置", "Position"),
    "download": ("下载录像", "Download"), "from": ("从", "From"), "to": ("到", "To"), "reason": ("事由", "Reason"),
    "no_records": ("当日无录像", "No recordings that day"), "ended": ("录像已播放完", "End of the recording"),
    "loading": ("正在检索录像…", "Searching recordings…"), "click_timeline": ("点击时间轴开始回放",
                                                                        "Click the timeline to play"),
    "pending": ("已提交审批，批准后再次下载", "Sent for approval: download again once approved"),
    "done": ("下载完成", "Done"), "failed": ("下载失败", "Failed"), "watermarking": ("正在加水印…", "Watermarking…"),
    "downloading": ("正在下载…", "Downloading…"), "save": ("保存文件", "Save the file"),
    "device": ("设备", "Device"),
}


def labels(lang: str) -> dict[str, str]:
    i = 0 if lang.startswith("zh") else 1
    return {k: v[i] for k, v in _T.items()}


def mount(app: FastAPI) -> None:
    from anfang.media.access import VIEWERS
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
                                       layout=layout, enabled=enabled, ptz=ptz_allowed(request, p))

    @pages.get("/video/channel/{channel_id}")
    async def channel_page(request: Request, p: CurrentPrincipal, channel_id: str) -> HTMLResponse:
        """One channel live (it starts at once), with its device, its recordings and the snapshot button."""
        from anfang.media.access import channel_in_scope

        ch, dev = await run_in_threadpool(channel_in_scope, request.app.state.store, p, channel_id)
        enabled = getattr(request.app.state, "live", None) is not None
        return await run_in_threadpool(render, request, "video_channel.html", p, nav="video_wall",
                                       V=labels(lang_of(request)), channel=ch.channel_id, name=ch.name or ch.channel_id,
                                       device_name=dev.name or dev.device_id, device_pk=dev.id,
                                       address=ch.address_text or "", enabled=enabled, ptz=ptz_allowed(request, p))

    @pages.get("/video/playback")
    async def playback_page(request: Request, p: CurrentPrincipal, channel: str = "", date: str = "") -> HTMLResponse:
        from datetime import datetime, timedelta

        from anfang.core.errors import ValidationError
        from anfang.gb28181.manscdp.xml import CHINA_TZ

        if p.role not in VIEWERS:
            raise Forbidden("无权调阅视频 / not allowed to watch video")
        if not channel:
            raise ValidationError("缺少通道 / channel missing")
        today = datetime.now(CHINA_TZ).date()
        day = date or (today - timedelta(days=1)).isoformat()
        from anfang.media.access import channel_in_scope

        ch, _dev = await run_in_threadpool(channel_in_scope, request.app.state.store, p, channel)
        return await run_in_threadpool(render, request, "video_playback.html", p, nav="video_wall",
                                       V=labels(lang_of(request)), channel=ch.channel_id, name=ch.name or ch.channel_id,
                                       day=day, ptz=ptz_allowed(request, p))

    app.include_router(pages)


def ptz_allowed(request: Request, p: Any) -> bool:
    """May this user steer cameras: the roles of the setting ``ptz_roles`` (the PTZ pad is shown to them)."""
    from anfang.gb28181.ptz import may_steer

    return may_steer(getattr(request.app.state, "settings", None), p.role)


def player_labels(request: Request) -> dict[str, Any]:
    from anfang.web.views import lang_of

    return labels(lang_of(request))
