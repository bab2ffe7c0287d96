"""Encryption at rest: AES-256-GCM for ID numbers, phone numbers and face embeddings, HMAC blind indexes.

Keys live outside the database: a key file (``data_key_file``, default ``<data_dir>/keys/data-keys.json``, mode
0600) or the ``ANFANG_DATA_KEYS`` environment variable holding the same JSON. A fresh install with neither gets a
key file generated on first use, so a development install just works; production should keep the file on a
separate volume (or in the environment) and back it up — a lost key means the encrypted columns are lost.

Ciphertext carries the id of the key that made it, so several keys can decrypt at once and ``anfang keys rotate``
re-encrypts rows in small batches to a new primary key while the server keeps serving:

- text columns: ``ag1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>``
- binary columns: ``b"AG1" ‖ len(kid) ‖ kid ‖ nonce ‖ ciphertext ‖ tag``

The column name is the associated data (AAD): a ciphertext copied into another column does not decrypt. Values
without the prefix are legacy plaintext (rows written before migration 0012) and are returned as they are;
``anfang keys status`` counts them.

Searching: AES-GCM is randomised, so equality lookups use a keyed hash (HMAC-SHA-256, first 128 bits, hex) of the
normalised value in a separate indexed column (``persons.id_number_hash``, ``persons.phone_hash``). The index key
is not rotated by ``keys rotate`` (all hashes would have to change at once); see docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, Text
from sqlalchemy.types import TypeDecorator

from anfang.core.errors import AnfangError

log = structlog.get_logger(__name__)

TEXT_PREFIX = "ag1."
BYTES_PREFIX = b"AG1"
NONCE = 12
RELOAD_SECONDS = 10.0  # how often a file-backed keyring looks for a new primary key written by `keys rotate`


class DataKeyError(AnfangError):
    status = 500
    code = "key_error"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_id() -> str:
    return "k" + secrets.token_hex(4)


AUDIT_DERIVED_KID = "a0"  # the audit key derived from the index key, for key sets written before audit keys


@dataclass(frozen=True)
class KeyMaterial:
    primary: str
    keys: dict[str, bytes]  # kid -> 32-byte AES key
    index_key: bytes  # HMAC key of the blind indexes
    # HMAC keys of the audit chain (security/audit.py): rotated on their own (``anfang audit rotate-key``), never
    # retired — every row names its key and stays verifiable. Without any, "a0" is derived from the index key.
    audit_keys: dict[str, bytes] = field(default_factory=dict)
    audit_primary: str | None = None

    def audit_key_set(self) -> dict[str, bytes]:
        derived = hmac.new(self.index_key, b"anfang audit chain v1", hashlib.sha256).digest()
        return {AUDIT_DERIVED_KID: derived, **self.audit_keys}

    def with_new_audit_key(self) -> KeyMaterial:
        kid = "a" + secrets.token_hex(4)
        return replace(self, audit_keys={**self.audit_keys, kid: secrets.token_bytes(32)}, audit_primary=kid)

    @classmethod
    def generate(cls) -> KeyMaterial:
        kid = new_key_id()
        return cls(kid, {kid: AESGCM.generate_key(bit_length=256)}, secrets.token_bytes(32))

    @classmethod
    def from_json(cls, text: str) -> KeyMaterial:
        try:
            data = json.loads(text)
            keys = {str(k): base64.b64decode(v) for k, v in data["keys"].items()}
            primary = str(data["primary"])
            index_key = base64.b64decode(data["index_key"])
            audit_keys = {str(k): base64.b64decode(v) for k, v in (data.get("audit_keys") or {}).items()}
            audit_primary = data.get("audit_primary")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataKeyError(f"密钥文件格式错误 / malformed data key set: {exc}") from exc
        if primary not in keys:
            raise DataKeyError(f"主密钥{primary}不在密钥集中 / primary key not in the key set")
        if any(len(k) != 32 for k in keys.values()) or len(index_key) < 32:
            raise DataKeyError("密钥长度错误（AES-256 需32字节）/ keys must be 32 bytes")
        if audit_primary is not None and audit_primary not in audit_keys:
            raise DataKeyError(f"审计主密钥{audit_primary}不在密钥集中 / audit primary key not in the key set")
        if any(len(k) < 32 for k in audit_keys.values()):
            raise DataKeyError("审计密钥至少32字节 / audit keys must be at least 32 bytes")
        return cls(primary, keys, index_key, audit_keys, audit_primary)

    def to_json(self) -> str:
        data: dict[str, Any] = {"version": 1, "primary": self.primary,
                                "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
                                "index_key": base64.b64encode(self.index_key).decode()}
        if self.audit_keys:
            data["audit_keys"] = {k: base64.b64encode(v).decode() for k, v in self.audit_keys.items()}
            data["audit_primary"] = self.audit_primary
        return json.dumps(data, indent=2)

    def with_new_primary(self) -> KeyMaterial:
        kid = new_key_id()
        return replace(self, primary=kid, keys={**self.keys, kid: AESGCM.generate_key(bit_length=256)})

    def without(self, kids: set[str]) -> KeyMaterial:
        if self.primary in kids:
            raise DataKeyError("不能删除主密钥 / cannot remove the primary key")
        return replace(self, keys={k: v for k, v in self.keys.items() if k not in kids})


def write_key_file(path: Path, material: KeyMaterial) -> None:
    """Atomically (re)write a key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(material.to_json())
    os.replace(tmp, path)


class Keyring:
    """Encrypts with the primary key, decrypts with any key of the set; reloads a key file that changed."""

    def __init__(self, material: KeyMaterial, source: Path | None = None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._mtime = source.stat().st_mtime_ns if source is not None and source.exists() else None
        self._checked = time.monotonic()
        self._set(material)

    def _set(self, material: KeyMaterial) -> None:
        self.material = material
        self.primary = material.primary
        self._aead = {kid: AESGCM(key) for kid, key in material.keys.items()}
        self._primary_aead = self._aead[material.primary]
        self._primary_text = f"{TEXT_PREFIX}{material.primary}."
        kid = material.primary.encode()
        self._primary_bytes = BYTES_PREFIX + bytes([len(kid)]) + kid
        self._mac = hmac.new(material.index_key, digestmod=hashlib.sha256)
        self._audit = {kid: hmac.new(key, digestmod=hashlib.sha256) for kid, key in material.audit_key_set().items()}
        self.audit_primary = material.audit_primary or AUDIT_DERIVED_KID

    def audit_mac(self, kid: str, payload: bytes) -> str:
        """HMAC-SHA256 (hex) of ``payload`` under audit key ``kid``; KeyError when the key set does not hold it
        (after a reload from the key file, in case another process rotated)."""
        mac = self._audit.get(kid)
        if mac is None:
            self.reload()
            mac = self._audit[kid]
        h = mac.copy()
        h.update(payload)
        return h.hexdigest()

    # -- key set ---------------------------------------------------------------------------------------------------
    def reload(self, force: bool = False) -> bool:
        """Re-read the key file when it changed (another process rotated); True when the key set changed."""
        if self.source is None:
            return False
        with self._lock:
            self._checked = time.monotonic()
            try:
                mtime = self.source.stat().st_mtime_ns
            except OSError:
                return False
            if not force and mtime == self._mtime:
                return False
            material = KeyMaterial.from_json(self.source.read_text(encoding="utf-8"))
            if material.index_key != self.material.index_key:
                log.error("data_index_key_changed", path=str(self.source))
                raise DataKeyError("密钥文件中的索引密钥被更改，拒绝加载 / the blind-index key changed; refusing")
            self._mtime = mtime
            changed = material != self.material
            if changed:
                log.info("data_keys_reloaded", primary=material.primary, keys=sorted(material.keys))
                self._set(material)
            return changed

    def _maybe_reload(self) -> None:
        if self.source is not None and time.monotonic() - self._checked > RELOAD_SECONDS:
            self.reload()

    def _aead_for(self, kid: str) -> AESGCM:
        aead = self._aead.get(kid)
        if aead is None and self.reload(force=True):
            aead = self._aead.get(kid)
        if aead is None:
            raise DataKeyError(f"缺少数据密钥{kid}，无法解密 / data key {kid} missing: check data_key_file / "
                            f"ANFANG_DATA_KEYS")
        return aead

    # -- text --------------------------------------------------------------------------------------------------------
    def encrypt_text(self, value: str, context: str) -> str:
        self._maybe_reload()
        nonce = os.urandom(NONCE)
        ct = self._primary_aead.encrypt(nonce, value.encode("utf-8"), context.encode())
        return self._primary_text + _b64e(nonce + ct)

    def decrypt_text(self, token: str, context: str) -> str:
        if not token.startswith(TEXT_PREFIX):
            return token  # legacy plaintext (before migration 0012)
        try:
            _, kid, body = token.split(".", 2)
            raw = _b64d(body)
        except ValueError as exc:
            raise DataKeyError("密文格式错误 / malformed ciphertext") from exc
        try:
            return self._aead_for(kid).decrypt(raw[:NONCE], raw[NONCE:], context.encode()).decode("utf-8")
        except DataKeyError:
            raise
        except Exception as exc:  # InvalidTag: wrong key, wrong column, or tampering
            raise DataKeyError(f"解密失败（密钥{kid}，{context}）/ decryption failed") from exc

    def text_encryptor(self, context: str) -> Callable[[str | None], str | None]:
        """encrypt_text(value, context) as one closure over the current primary key, for bulk writers (the
        importer): no per-value key-set check. Values it writes stay readable after a rotation (old keys decrypt)
        and are picked up by `anfang keys rotate`."""
        aead, prefix, aad, urandom = self._primary_aead, self._primary_text, context.encode(), os.urandom
        b64 = base64.urlsafe_b64encode

        def encrypt(value: str | None) -> str | None:
            if value is None:
                return None
            nonce = urandom(NONCE)
            return prefix + b64(nonce + aead.encrypt(nonce, value.encode("utf-8"), aad)).rstrip(b"=").decode()

        return encrypt

    def blinder(self, kind: str) -> Callable[[str], str]:
        """blind(value, kind) as one closure (the importer's hot path); value already normalised."""
        mac, head = self._mac, kind.encode() + b"\x00"

        def blind(value: str) -> str:
            h = mac.copy()
            h.update(head)
            h.update(value.encode("utf-8"))
            return h.hexdigest()[:32]

        return blind

    # -- bytes -------------------------------------------------------------------------------------------------------
    def encrypt_bytes(self, value: bytes, context: str) -> bytes:
        self._maybe_reload()
        nonce = os.urandom(NONCE)
        return self._primary_bytes + nonce + self._primary_aead.encrypt(nonce, bytes(value), context.encode())

    def decrypt_bytes(self, blob: bytes, context: str) -> bytes:
        blob = bytes(blob)
        if not blob.startswith(BYTES_PREFIX) or len(blob) < 4:
            return blob
        n = blob[3]
        kid = blob[4:4 + n].decode("ascii", "replace")
        body = blob[4 + n:]
        try:
            return self._aead_for(kid).decrypt(body[:NONCE], body[NONCE:], context.encode())
        except DataKeyError:
            raise
        except Exception as exc:
            raise DataKeyError(f"解密失败（密钥{kid}，{context}）/ decryption failed") from exc

    # -- inspection --------------------------------------------------------------------------------------------------
    @staticmethod
    def key_id_of(stored: str | bytes | None) -> str | None:
        """The key id of a stored value, "" for legacy plaintext, None for NULL."""
        if stored is None:
            return None
        if isinstance(stored, str):
            return stored.split(".", 2)[1] if stored.startswith(TEXT_PREFIX) else ""
        stored = bytes(stored)
        if stored.startswith(BYTES_PREFIX) and len(stored) > 4:
            return stored[4:4 + stored[3]].decode("ascii", "replace")
        return ""

    # -- blind index ---------------------------------------------------------------------------------------------------
    def blind(self, value: str, kind: str) -> str:
        """Keyed hash of a normalised value for equality search (128 bits, hex)."""
        h = self._mac.copy()
        h.update(_KIND_PREFIX.get(kind) or kind.encode() + b"\x00")
        h.update(value.encode("utf-8"))
        return h.hexdigest()[:32]


_KIND_PREFIX = {k: k.encode() + b"\x00" for k in ("id_number", "phone")}


def normalise_id_number(value: str) -> str:
    return value.strip().upper()


_PHONE_JUNK = str.maketrans("", "", " -()\t")


def normalise_phone(value: str) -> str:
    return value if value.isdigit() else value.strip().translate(_PHONE_JUNK)


# ---- the process-wide keyring ----------------------------------------------------------------------------------
_current: Keyring | None = None
_current_lock = threading.Lock()


def default_key_file(data_dir: Path) -> Path:
    return Path(data_dir) / "keys" / "data-keys.json"


def load_keyring(settings: Any) -> Keyring:
    """The keyring named by settings: ``data_keys`` (JSON, from ANFANG_DATA_KEYS), else the key file
    ``data_key_file`` (default under the data directory), generated when absent."""
    inline = getattr(settings, "data_keys", None)
    if inline:
        return Keyring(KeyMaterial.from_json(inline))
    path = Path(getattr(settings, "data_key_file", None) or default_key_file(settings.data_dir))
    if not path.exists():
        write_key_file(path, KeyMaterial.generate())
        log.warning("data_key_generated", path=str(path),
                    hint="新生成的数据加密密钥：请备份，丢失即无法解密 / back this key file up")
    return Keyring(KeyMaterial.from_json(path.read_text(encoding="utf-8")), source=path)


def configure(keyring: Keyring | None) -> Keyring | None:
    """Install the process-wide keyring (None: load lazily from the environment / default file on first use)."""
    global _current
    with _current_lock:
        _current = keyring
    return keyring


def configure_from_settings(settings: Any) -> Keyring:
    ring = load_keyring(settings)
    configure(ring)
    return ring


def keyring() -> Keyring:
    ring = _current
    if ring is not None:
        return ring
    with _current_lock:
        if _current is None:
            from anfang.config import load_settings

            globals()["_current"] = load_keyring(load_settings())
        return _current  # type: ignore[return-value]


def exported() -> str:
    """The current key set as JSON, for a child process (the import's parsing processes)."""
    return keyring().material.to_json()


def blind_id_number(value: str) -> str:
    return keyring().blind(normalise_id_number(value), "id_number")


def blind_phone(value: str) -> str:
    return keyring().blind(normalise_phone(value), "phone")


# ---- column types -----------------------------------------------------------------------------------------------
_NORMALISE = {"id_number": normalise_id_number, "phone": normalise_phone}


class _BlindComparator(TypeDecorator.Comparator):
    """``col == value`` / ``col != value`` / ``col.in_(values)`` on an encrypted column with a blind index compare
    the sibling ``<col>_hash`` column with the keyed hash of the value(s), so queries written against the plaintext
    column (``Person.id_number == x``) keep working; other comparisons are refused (ciphertext is not ordered)."""

    def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
        from sqlalchemy.sql import operators

        typ = self.type
        kind = getattr(typ, "blind_kind", None)
        if op in (operators.is_, operators.is_not) or (op in (operators.eq, operators.ne) and other[0] is None):
            return super().operate(op, *other, **kwargs)  # IS [NOT] NULL
        if op not in (operators.eq, operators.ne, operators.in_op, operators.not_in_op):
            raise DataKeyError(f"加密列不能用于此比较 / encrypted column {typ.context} supports only =, != and IN")
        if kind is None:
            raise DataKeyError(f"加密列{typ.context}没有盲索引，不能比较 / encrypted column has no blind index")
        hashed = self.expr.table.c[f"{self.expr.key}_hash"]
        norm = _NORMALISE[kind]

        def blind(v: Any) -> Any:
            return None if v is None else keyring().blind(norm(str(v)), kind)

        if op in (operators.in_op, operators.not_in_op):
            return op(hashed, [blind(v) for v in other[0]], **kwargs)
        return op(hashed, blind(other[0]), **kwargs)


class EncryptedText(TypeDecorator):
    """A text column stored AES-GCM encrypted; reads return the plaintext. Equality search goes through the
    blind-index column ``<name>_hash`` when blind_kind is given (``id_number``, ``phone``)."""

    impl = Text
    cache_ok = True
    encrypted = True
    comparator_factory = _BlindComparator

    def __init__(self, context: str, blind_kind: str | None = None) -> None:
        super().__init__()
        self.context = context
        self.blind_kind = blind_kind

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else keyring().encrypt_text(str(value), self.context)

    def bulk_encryptor(self) -> Callable[[str | None], str | None]:
        return keyring().text_encryptor(self.context)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else keyring().decrypt_text(value, self.context)


class EncryptedBytes(TypeDecorator):
    """A binary column stored AES-GCM encrypted (face embeddings)."""

    impl = LargeBinary
    cache_ok = True
    encrypted = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else keyring().encrypt_bytes(value, self.context)

    def process_result_value(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else keyring().decrypt_bytes(value, self.context)


# The encrypted columns: (table, primary key, column, context, kind). `keys status` / `keys rotate` and migration 0012
# walk these (rotation keeps every blind index: the index key does not change).
ENCRYPTED_COLUMNS: tuple[tuple[str, str, str, str, str], ...] = (
    ("persons", "id", "id_number", "persons.id_number", "text"),
    ("persons", "id", "phone", "persons.phone", "text"),
    ("houses", "id", "owner_phone", "houses.owner_phone", "text"),
    ("face_entries", "id", "embedding", "face_entries.embedding", "bytes"),
    # door-plate room (migration 0015_doorplates_encryption; the declaration's hash column is set there)
    ("plate_declarations", "id", "id_number", "plate_declarations.id_number", "text"),
    ("plate_declarations", "id", "phone", "plate_declarations.phone", "text"),
    ("plate_tipoffs", "id", "contact", "plate_tipoffs.contact", "text"),
    # TOTP secrets (security/models.py UserSecurity; written encrypted from the start, so no migration converts them)
    ("user_security", "user_id", "totp_secret", "user_security.totp_secret", "text"),
)
