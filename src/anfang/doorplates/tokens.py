"""Signed, opaque tokens for door plates and visitor passes.

A plate token is ``{kid}.{serial}.{sig}``:

- ``kid``: the id of the HMAC key that signed it (keys rotate: a new key signs new plates, old keys still verify
  the plates already on the walls until an operator removes them from the key ring);
- ``serial``: 80 random bits (base32), the primary handle of a ``door_plates`` row — it says nothing about the
  address and cannot be guessed or enumerated;
- ``sig``: HMAC-SHA256(key[kid], purpose | kid | serial), truncated to 80 bits.

The token carries no personal data and no database id. Whether a serial is still valid (not revoked) is a
database question (``door_plates.revoked_at``), answered by the service after the signature holds.

Keys come from ``ANFANG_PLATE_KEYS`` (``kid:hex,kid:hex``; the first signs) or, when that is unset, from the key
file ``<data_dir>/plate-keys.json`` (created with one random key on first use, mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from anfang.core.errors import ValidationError

ENV_KEYS = "ANFANG_PLATE_KEYS"
KEY_FILE = "plate-keys.json"
SERIAL_BYTES = 10
SIG_BYTES = 10
_KID_RE = re.compile(r"^[a-z0-9]{1,8}$")
_PART_RE = re.compile(r"^[a-z2-7]{16}$")


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def new_serial() -> str:
    """80 random bits, lower-case base32 (16 characters): the plate's or pass's public handle."""
    return _b32(secrets.token_bytes(SERIAL_BYTES))


class TokenRejected(Exception):
    """A token that is not ours: malformed, signed with an unknown key, or with a wrong signature."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # malformed | unknown_key | bad_signature


@dataclass
class Keyring:
    """kid -> secret; ``current`` signs new tokens, every key in the ring verifies."""

    keys: dict[str, bytes]
    current: str
    path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValidationError(f"门牌签名密钥环缺少当前密钥 {self.current} / current key missing from key ring")
        for kid, key in self.keys.items():
            if not _KID_RE.match(kid):
                raise ValidationError(f"密钥编号无效：{kid}（1–8位小写字母或数字）/ invalid key id")
            if len(key) < 16:
                raise ValidationError(f"密钥 {kid} 过短（至少16字节）/ key {kid} shorter than 16 bytes")

    # ---- signing ------------------------------------------------------------------------------------------------
    def _sig(self, purpose: str, kid: str, serial: str) -> str:
        mac = hmac.new(self.keys[kid], f"anfang-{purpose}-v1|{kid}|{serial}".encode(), hashlib.sha256).digest()
        return _b32(mac[:SIG_BYTES])

    def sign(self, serial: str, *, purpose: str = "plate", kid: str | None = None) -> str:
        kid = kid or self.current
        if kid not in self.keys:
            raise ValidationError(f"未知的签名密钥：{kid} / unknown key")
        return f"{kid}.{serial}.{self._sig(purpose, kid, serial)}"

    def verify(self, token: str, *, purpose: str = "plate") -> tuple[str, str]:
        """(kid, serial) of a token signed by a key in the ring; raises TokenRejected otherwise."""
        parts = (token or "").strip().lower().split(".")
        if len(parts) != 3 or not _KID_RE.match(parts[0]) or not _PART_RE.match(parts[1]) \
                or not _PART_RE.match(parts[2]):
            raise TokenRejected("malformed")
        kid, serial, sig = parts
        if kid not in self.keys:
            raise TokenRejected("unknown_key")
        if not hmac.compare_digest(self._sig(purpose, kid, serial), sig):
            raise TokenRejected("bad_signature")
        return kid, serial

    # ---- rotation -----------------------------------------------------------------------------------------------
    def rotate(self) -> str:
        """Add a fresh key and make it current; the old keys stay and keep verifying. Saves the key file."""
        n = 1
        while f"k{n}" in self.keys:
            n += 1
        kid = f"k{n}"
        self.keys[kid] = secrets.token_bytes(32)
        self.current = kid
        if self.path is not None:
            save_key_file(self.path, self)
        return kid

    # ---- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, value: str) -> Keyring:
        keys: dict[str, bytes] = {}
        for item in value.split(","):
            kid, _, hexkey = item.strip().partition(":")
            try:
                keys[kid.strip()] = bytes.fromhex(hexkey.strip())
            except ValueError:
                raise ValidationError(f"{ENV_KEYS} 格式应为 kid:十六进制密钥,… / expected kid:hex,…") from None
        if not keys:
            raise ValidationError(f"{ENV_KEYS} 为空 / {ENV_KEYS} is empty")
        return cls(keys=keys, current=next(iter(keys)))


def save_key_file(path: Path, ring: Keyring) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"current": ring.current, "keys": {k: v.hex() for k, v in ring.keys.items()}}, indent=2)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def load_keyring(data_dir: Path) -> Keyring:
    """The key ring from ANFANG_PLATE_KEYS, else from <data_dir>/plate-keys.json (created when absent)."""
    env = os.environ.get(ENV_KEYS)
    if env:
        return Keyring.from_env(env)
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        ring = Keyring(keys={"k1": secrets.token_bytes(32)}, current="k1", path=path)
        save_key_file(path, ring)
        return ring
    try:
        raw = json.loads(path.read_text())
        keys = {k: bytes.fromhex(v) for k, v in raw["keys"].items()}
        return Keyring(keys=keys, current=raw["current"], path=path)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"门牌密钥文件损坏：{path}（{exc}）/ plate key file unreadable") from None
