"""Short-lived signed stream tokens: the console (which checked scope) issues one per viewer and channel; the media
node (which may run in another process without the user database) verifies it. HMAC-SHA256 over a compact JSON
claim set; a token names one stream key and one channel, so a token for one channel opens no other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


class TokenError(ValueError):
    """The token is malformed, forged, expired or for another stream."""


@dataclass(frozen=True, slots=True)
class StreamClaims:
    stream: str  # the media node's stream key (one per channel and kind)
    channel_id: str
    user: str
    role: str
    user_id: int | None
    expires: float  # unix time
    view: str  # a random id of this viewing (ties the audit entries of its start and end together)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, claims: StreamClaims) -> str:
    body = json.dumps([claims.stream, claims.channel_id, claims.user, claims.role, claims.user_id,
                       round(claims.expires), claims.view], separators=(",", ":"), ensure_ascii=False).encode()
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:18]
    return f"{_b64(body)}.{_b64(mac)}"


def verify(secret: bytes, token: str, *, stream: str | None = None, now: float | None = None) -> StreamClaims:
    if not token or len(token) > 2048 or token.count(".") != 1:
        raise TokenError("malformed token")
    body_text, mac_text = token.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:18]):
        raise TokenError("bad signature")
    try:
        s, channel_id, user, role, user_id, expires, view = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    claims = StreamClaims(str(s), str(channel_id), str(user), str(role), user_id, float(expires), str(view))
    if claims.expires < (now if now is not None else time.time()):
        raise TokenError("expired token")
    if stream is not None and claims.stream != stream:
        raise TokenError("token is for another stream")
    return claims


def load_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The shared media secret: configured (``media_secret``, the same on the console and every media node), else
    a random one kept in ``data_dir/keys/media-secret`` (embedded node: console and node are one process)."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / "keys" / "media-secret"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = _b64(os.urandom(32)).encode()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(secret)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return secret
