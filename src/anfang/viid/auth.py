"""HTTP digest (RFC 7616 / 2617, MD5, qop=auth) for GA/T 1400 registration. Nonces are stateless: a timestamp
signed with HMAC, so they survive a restart and work across worker processes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

REALM = "viid"
NONCE_TTL = 300.0
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - MD5 is what digest auth specifies


class Digest:
    def __init__(self, key: bytes, realm: str = REALM) -> None:
        self.key = key
        self.realm = realm

    def nonce(self) -> str:
        stamp = f"{time.time():.0f}.{secrets.token_hex(4)}"
        sig = hmac.new(self.key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}.{sig}"

    def _nonce_ok(self, nonce: str) -> bool:
        try:
            ts, rnd, sig = nonce.split(".")
        except ValueError:
            return False
        good = hmac.new(self.key, f"{ts}.{rnd}".encode(), hashlib.sha256).hexdigest()[:24]
        return hmac.compare_digest(good, sig) and time.time() - float(ts) <= NONCE_TTL

    def challenge(self) -> str:
        return (f'Digest realm="{self.realm}", qop="auth", nonce="{self.nonce()}", '
                f'opaque="{secrets.token_hex(8)}", algorithm=MD5')

    @staticmethod
    def parse(header: str | None) -> dict[str, str] | None:
        if not header or header[:7].lower() != "digest ":
            return None
        return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                for m in _PARAM.finditer(header[7:])}

    def verify(self, params: dict[str, str], method: str, password: str) -> bool:
        """True when ``params`` (a parsed Authorization header) proves knowledge of ``password``."""
        nonce, response = params.get("nonce", ""), params.get("response", "")
        if not self._nonce_ok(nonce) or not response:
            return False
        ha1 = _md5(f"{params.get('username', '')}:{params.get('realm', self.realm)}:{password}")
        ha2 = _md5(f"{method}:{params.get('uri', '')}")
        qop = params.get("qop")
        if qop:
            want = _md5(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:{qop}:{ha2}")
        else:
            want = _md5(f"{ha1}:{nonce}:{ha2}")
        return hmac.compare_digest(want, response.lower())
