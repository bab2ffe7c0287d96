"""Who may watch which channel, and the errors of the video API: the floor under every video module (live,
recordings, record search, pages); it imports none of them."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import select

from anfang.core.errors import AnfangError, Forbidden, NotFound
from anfang.devices.models import Channel, Device
from anfang.media import linking
from anfang.media.control import VideoError
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store

TOKEN_SECONDS = 120.0  # a stream token opens the WebSocket within this time; the viewing itself may last longer
VIEWERS = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.property_staff, Role.grid_worker})


def _device_scope(p: Principal) -> Any:
    from anfang.gb28181.views import device_condition

    return device_condition(p)


def channel_in_scope(store: Store, p: Principal, channel_id: str,
                     warning_id: int | None = None) -> tuple[Channel, Device]:
    """The channel and its device, if the principal may watch it: 404 when it does not exist, 403 outside scope.
    A camera linked to a warning the principal may see is watchable from that warning (报警联动)."""
    if p.role not in VIEWERS:
        raise Forbidden("无权调阅视频 / not allowed to watch video")
    with store.session() as s:
        row = s.execute(select(Channel, Device).join(Device, Device.id == Channel.device_pk)
                        .where(Channel.channel_id == channel_id, Device.protocol == "gb28181")
                        .order_by(Channel.id).limit(1)).first()
        if row is None:
            raise NotFound("通道不存在 / channel not found")
        inside = s.scalar(select(Device.id).where(Device.id == row[1].id, _device_scope(p)))
        if inside is None and warning_id is not None:
            linked = {c["channel_id"] for c in warning_links(store, p, warning_id)}
            inside = row[1].id if channel_id in linked else None
        if inside is None:
            raise Forbidden("该通道不在您的辖区内 / this channel is outside your jurisdiction")
        s.expunge_all()
        return row[0], row[1]


class VideoUnavailable(AnfangError):
    status = 503
    code = "video_disabled"

    def __init__(self, message: str = "视频服务未启用（需启用 GB/T 28181 信令） / video is not enabled") -> None:
        super().__init__(message)


class VideoFailed(AnfangError):
    def __init__(self, err: VideoError) -> None:
        super().__init__(err.message)
        self.status, self.code = err.status, err.code


def ws_url(request: Request, node_url: str, key: str) -> str:
    if node_url:
        base = node_url.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
        return f"{base}/media/ws/{key}"
    return f"/media/ws/{key}"  # the console's own origin: the page resolves it


def warning_links(store: Store, p: Principal, warning_id: int) -> list[dict[str, Any]]:
    """The warning's linked cameras, if the principal may see the warning (else NotFound from the service)."""
    from anfang.warnings.service import WarningService

    return linking.linked_channels(store, WarningService(store).get(p, warning_id))
