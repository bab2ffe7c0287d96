"""What the GB/T 28181 cascade (cascade.py) needs from the SIP server it runs in, as a Protocol: the server
(server.py) creates the cascade and satisfies this; the cascade never imports the server (no import cycle)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from anfang.gb28181.sip.transport import SipEndpoint
from anfang.store.engine import Store


class SipHost(Protocol):
    config: Any  # anfang.gb28181.server.GbConfig: server_id, password, ...
    endpoint: SipEndpoint
    store: Store

    @property
    def port(self) -> int: ...

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task: ...

    async def invite(self, device_id: str, channel_id: str, sdp: bytes, *, subject: str | None = None,
                     timeout: float = 8.0) -> tuple[Any, dict[str, Any] | None]: ...

    async def bye(self, dialog: dict[str, Any], timeout: float = 5.0) -> int: ...


__all__ = ["SipHost"]
