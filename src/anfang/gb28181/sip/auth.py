"""HTTP digest (RFC 2617 / RFC 2069) for SIP REGISTER: server-side nonces and checks, client-side answers.

Server: nonces are random, remembered with their issue time, expire after ``ttl`` seconds, and cannot be replayed:
without ``qop`` a nonce is good for one successful REGISTER; with ``qop=auth`` each use needs a higher ``nc``.
The ``uri`` the device put in its answer is what gets hashed, even when it differs from the Request-URI (many
devices put the server id or IP there); the response still has to match the password, so this is safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(*, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    qop: str | None = None, nc: str = "", cnonce: str = "") -> str:
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


def authorization_header(challenge: dict[str, str], *, username: str, password: str, method: str, uri: str,
                         nc: int = 1) -> str:
    """Answer a ``WWW-Authenticate`` challenge (client side: simulator, cascade registration)."""
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    qop = "auth" if "auth" in [q.strip() for q in challenge.get("qop", "").split(",")] else None
    cnonce = os.urandom(8).hex() if qop else ""
    ncs = f"{nc:08x}"
    resp = digest_response(username=username, realm=realm, password=password, method=method, uri=uri,
                           nonce=nonce, qop=qop, nc=ncs, cnonce=cnonce)
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{resp}"', "algorithm=MD5"]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    if challenge.get("opaque"):
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


@dataclass
class _Nonce:
    issued: float
    last_nc: int = 0
    used: bool = False


class NonceStore:
    """Issued nonces in memory, purged when expired."""

    def __init__(self, ttl: float = 60.0, max_size: int = 1_000_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._nonces: dict[str, _Nonce] = {}
        self._last_purge = time.monotonic()

    def issue(self) -> str:
        now = time.monotonic()
        if now - self._last_purge > self.ttl or len(self._nonces) >= self.max_size:
            self.purge(now)
        nonce = os.urandom(16).hex()
        self._nonces[nonce] = _Nonce(now)
        return nonce

    def purge(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._nonces = {k: v for k, v in self._nonces.items() if now - v.issued <= self.ttl}
        while len(self._nonces) >= self.max_size:  # flood: drop the oldest
            self._nonces.pop(next(iter(self._nonces)))
        self._last_purge = now

    def check(self, nonce: str, qop: str | None, nc: str) -> str:
        """'ok', 'stale' (expired or unknown: challenge again with stale=true) or 'replay'."""
        entry = self._nonces.get(nonce)
        if entry is None or time.monotonic() - entry.issued > self.ttl:
            self._nonces.pop(nonce, None)
            return "stale"
        if qop:
            try:
                count = int(nc, 16)
            except ValueError:
                return "replay"
            return "ok" if count > entry.last_nc else "replay"
        return "replay" if entry.used else "ok"

    def consume(self, nonce: str, qop: str | None, nc: str) -> None:
        entry = self._nonces.get(nonce)
        if entry is None:
            return
        if qop:
            with contextlib.suppress(ValueError):
                entry.last_nc = max(entry.last_nc, int(nc, 16))
        else:
            entry.used = True
            self._nonces.pop(nonce, None)


def verify(auth: dict[str, str], *, password: str, realm: str, method: str) -> bool:
    """Constant-time comparison of the device's response with the one its password gives."""
    import hmac

    qop = auth.get("qop") or None
    if qop and qop.lower() != "auth":
        return False
    algorithm = (auth.get("algorithm") or "MD5").upper()
    if algorithm != "MD5":
        return False
    expected = digest_response(username=auth.get("username", ""), realm=auth.get("realm", realm),
                               password=password, method=method, uri=auth.get("uri", ""),
                               nonce=auth.get("nonce", ""), qop=qop, nc=auth.get("nc", ""),
                               cnonce=auth.get("cnonce", ""))
    return hmac.compare_digest(expected, auth.get("response", "").lower())
