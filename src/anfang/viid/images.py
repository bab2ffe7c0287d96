"""Image store: where the photo bytes live. Metadata and the content index live in the database (``viid_blobs``).

Photos are small (10–200 KB) and many (hundreds per second). One file per photo caps ingest at a few hundred per
second once each is fsynced, so the default implementation packs them, like Haystack and SeaweedFS volumes do, into
large append-only segment files, one directory per capture day: ``put_many`` appends a whole batch and fsyncs
once, and returns a ``location`` (``day/segment:offset:length``) that the caller stores in the same transaction as
the records. Content is addressed by SHA-256 (``viid_blobs``, one row per content). An S3-compatible store
implements the same three methods with ``location`` = object key (``day/sha256``, a bucket prefix per day).

Several volumes (``viid_image_volumes``): a day's directory is placed, when its first image arrives, on the volume
(the root included) with the most free bytes; off the root it is reached through a symlink ``root/<day>``, so
locations, reads and the list of days are the same wherever the bytes live.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import shutil
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from anfang.config import Settings

try:  # Pillow verifies that the bytes are a decodable image; magic bytes alone are checked without it
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover - pillow is a dependency, kept optional for slim installs
    _PILImage = None

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


_datasync = getattr(os, "fdatasync", os.fsync)
log = structlog.get_logger(__name__)


class BadImage(ValueError):
    """The data is not a usable image (not base64, not JPEG/PNG, too large, corrupt)."""


class CheckedImage:
    """A decoded, checked image. ``sha256`` is computed on first use (by the writer thread: hashing releases the
    GIL, which on the event loop's thread would let the writer hold it mid-request)."""

    __slots__ = ("data", "format", "width", "height", "_sha256")

    def __init__(self, data: bytes, fmt: str, width: int | None, height: int | None) -> None:
        self.data, self.format, self.width, self.height = data, fmt, width, height
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the JPEG marker segments from SOI to the first SOS and return (width, height) from the SOF segment;
    ``BadImage`` when the structure is broken or no frame header is found, or the EOI marker is missing.
    (This is what Pillow's JPEG ``open``/``verify`` checks too, at a tenth of the cost.)"""
    n, i = len(data), 2
    size = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise BadImage("JPEG 结构损坏 / corrupt JPEG structure")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            raise BadImage("JPEG 段长度无效 / bad JPEG segment length")
        if marker in _SOF and length >= 7:
            size = ((data[i + 7] << 8) | data[i + 8], (data[i + 5] << 8) | data[i + 6])
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        i += 2 + length
    if size is None or size[0] == 0 or size[1] == 0:
        raise BadImage("JPEG 缺少帧头 / JPEG without a frame header")
    if data.rfind(b"\xff\xd9", max(n - 64, 0)) < 0:
        raise BadImage("JPEG 不完整 / truncated JPEG (no EOI)")
    return size


def decode_image(b64: object, *, max_bytes: int) -> CheckedImage:
    """Decode base64 image data and check it is a real JPEG or PNG within ``max_bytes``."""
    if not isinstance(b64, str) or not b64:
        raise BadImage("图片数据为空 / empty image data")
    if len(b64) > max_bytes * 4 // 3 + 8:
        raise BadImage(f"图片超过 {max_bytes} 字节 / image larger than {max_bytes} bytes")
    if b64.startswith("data:"):
        b64 = b64.split(",", 1)[-1]
    try:
        data = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise BadImage("图片数据不是合法的 Base64 / image data is not base64") from exc
    return check_image(data, max_bytes=max_bytes)


def check_image(data: bytes, *, max_bytes: int) -> CheckedImage:
    """A real JPEG (marker structure, frame header, EOI) or PNG (Pillow's verify: chunk CRCs) within the limit."""
    if len(data) > max_bytes:
        raise BadImage(f"图片超过 {max_bytes} 字节 / image larger than {max_bytes} bytes")
    if data.startswith(JPEG_MAGIC):
        width, height = jpeg_size(data)
        return CheckedImage(data, "Jpeg", width, height)
    if not data.startswith(PNG_MAGIC):
        raise BadImage("图片不是 JPEG 或 PNG / image is neither JPEG nor PNG")
    width = height = None
    if len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if _PILImage is not None:
        try:
            with _PILImage.open(io.BytesIO(data)) as im:
                width, height = im.size
                im.verify()
        except Exception as exc:  # noqa: BLE001 - any decoder error means a corrupt image
            raise BadImage(f"PNG 已损坏 / corrupt PNG: {type(exc).__name__}") from exc
    elif not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        raise BadImage("PNG 不完整 / truncated PNG")
    return CheckedImage(data, "Png", width, height)


class ImageStore(Protocol):
    def put_many(self, blobs: list[bytes], day: date | None = None) -> list[str]:
        """Store the blobs durably (fsynced / acknowledged by the object store) and return one location each;
        ``day`` (default today, China time) is the capture day whose files hold them."""

    def get(self, location: str) -> bytes:
        """The bytes at ``location``; ``KeyError`` when absent."""

    def drop_days_before(self, day: date) -> int:
        """Remove the files of every day before ``day`` (retention); the number of days removed."""


def _today() -> date:
    from anfang.viid.days import day_of

    return day_of(datetime.now(UTC))


class SegmentImageStore:
    """Append-only segment files, one directory a day: ``20261207/seg-000001.dat`` …; one fsync per ``put_many``.
    A segment never holds two days, so retention deletes a day's images by unlinking its directory's files.

    Crash safety: bytes are written and fsynced before the caller commits the index rows, so an acknowledged
    image is always readable; a crash between the two leaves unreferenced bytes at the segment's tail (harmless,
    gone with the day). Segments written before per-day directories (``seg-000001.dat`` in ``root``, locations
    ``1:offset:length``) stay readable and are removed by ``release`` once nothing in them is referenced.
    """

    OPEN_DAYS = 4  # append handles kept open (today, yesterday's late uploads, …)

    def __init__(self, root: Path, *, volumes: Iterable[Path] = (), segment_bytes: int = 1 << 30,
                 fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # extra directories (other disks) a new day may be placed on; the root is always a candidate too
        here = os.path.realpath(self.root)
        self.volumes = [Path(os.path.abspath(v)) for v in volumes if os.path.realpath(v) != here]
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._open_days: dict[str, tuple[int, Any]] = {}  # "20261207" -> (segment number, append handle)

    def _path(self, n: int, day: str = "") -> Path:
        return (self.root / day if day else self.root) / f"seg-{n:06d}.dat"

    def _sync_dir(self, path: Path) -> None:
        if self.fsync:  # make a new file's (or directory's) entry durable too
            dfd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @staticmethod
    def free_bytes(path: Path) -> int | None:
        """Bytes an unprivileged writer may still use on ``path``'s file system; None when it cannot be used
        (missing, not a directory, not writable)."""
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            return None
        try:
            st = os.statvfs(path)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _place(self, day: str) -> Path:
        """Create ``root/<day>``: a directory on the root, or a symlink to ``<volume>/<day>`` on the volume with
        the most free bytes (the root wins a tie). Unusable volumes are skipped with a warning."""
        link = self.root / day
        best, most = self.root, -1
        if self.volumes:
            for place in (self.root, *self.volumes):
                free = self.free_bytes(place)
                if free is None:
                    log.warning("viid_image_volume_unusable", volume=str(place), day=day,
                                msg="图片卷不存在或不可写，跳过 / image volume missing or not writable, skipped")
                    continue
                if free > most:
                    best, most = place, free
        if best == self.root:
            link.mkdir(parents=True, exist_ok=True)
            self._sync_dir(self.root)
            return link
        target = best / day
        target.mkdir(exist_ok=True)
        self._sync_dir(best)
        try:
            os.symlink(target, link, target_is_directory=True)
        except FileExistsError:  # another process placed the day first: use its choice
            with contextlib.suppress(OSError):
                target.rmdir()  # only when still empty
            return link
        self._sync_dir(self.root)
        log.info("viid_image_day_placed", day=day, volume=str(best), free_bytes=most)
        return link

    def _handle(self, day: str) -> tuple[int, Any]:
        """The append handle of ``day``'s current segment (a new segment once it is full)."""
        hit = self._open_days.pop(day, None)
        if hit is not None and hit[1].tell() >= self.segment_bytes:
            hit[1].close()
            hit = (hit[0] + 1, None)
        if hit is None or hit[1] is None:
            folder = self.root / day
            if folder.is_symlink() and not folder.exists():  # its volume is gone: never reuse its numbers
                raise OSError(f"图片卷不可用：{folder} -> {os.readlink(folder)} / the volume of day {day} is missing")
            if not folder.exists():
                self._place(day)
            if hit is None:
                segs = sorted(folder.glob("seg-*.dat"))
                n = int(segs[-1].stem[4:]) if segs else 1
            else:
                n = hit[0]
            fh = open(self._path(n, day), "ab")  # noqa: SIM115 - held open while the day is written
            fh.seek(0, os.SEEK_END)
            self._sync_dir(folder)
            hit = (n, fh)
        self._open_days[day] = hit  # most recently used last
        while len(self._open_days) > self.OPEN_DAYS:
            oldest = next(iter(self._open_days))
            self._open_days.pop(oldest)[1].close()
        return hit

    def put_many(self, blobs: list[bytes], day: date | None = None) -> list[str]:
        if not blobs:
            return []
        key = (day or _today()).strftime("%Y%m%d")
        out: list[str] = []
        with self._lock:
            seg_no, fh = self._handle(key)
            offset = fh.tell()
            for blob in blobs:
                out.append(f"{key}/{seg_no}:{offset}:{len(blob)}")
                offset += len(blob)
            fh.write(b"".join(blobs))
            fh.flush()
            if self.fsync:  # data + size; no need to flush the file's times
                _datasync(fh.fileno())
        return out

    def get(self, location: str) -> bytes:
        day, _, rest = location.rpartition("/")
        try:
            seg, offset, length = (int(x) for x in rest.split(":"))
        except ValueError as exc:
            raise KeyError(location) from exc
        if day and not (len(day) == 8 and day.isdigit()):
            raise KeyError(location)
        try:  # a missing file, day directory or volume (dangling symlink) all mean: not here
            with open(self._path(seg, day), "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise KeyError(location) from exc
        if len(data) != length:
            raise KeyError(location)
        return data

    @staticmethod
    def _day_names(folder: Path) -> set[str]:
        """Names of the day directories (or day symlinks, even dangling ones) in ``folder``."""
        try:
            return {p.name for p in folder.iterdir()
                    if len(p.name) == 8 and p.name.isdigit() and (p.is_symlink() or p.is_dir())}
        except OSError:  # a volume that is not there has no days
            return set()

    def days(self) -> list[str]:
        """The days that have files, oldest first (``20261207``); a day whose volume is missing is listed too."""
        return sorted(self._day_names(self.root))

    def drop_days_before(self, day: date) -> int:
        """Unlink the segment files of every day before ``day``: a whole day at a time, never a copy. A day on
        another volume loses its files there first, then its symlink in the root (so a crash in between leaves a
        dangling link that the next run removes, never unreachable files); day directories left on a volume (it
        was missing at the last run) go too."""
        limit = day.strftime("%Y%m%d")
        dropped: set[str] = set()
        with self._lock:
            for name in self.days():
                if name >= limit:
                    break
                hit = self._open_days.pop(name, None)
                if hit is not None and hit[1] is not None:
                    hit[1].close()
                path = self.root / name
                if path.is_symlink():
                    target = Path(os.readlink(path))
                    shutil.rmtree(target if target.is_absolute() else self.root / target, ignore_errors=True)
                    path.unlink(missing_ok=True)
                else:
                    shutil.rmtree(path, ignore_errors=True)
                dropped.add(name)
            for volume in self.volumes:
                for name in sorted(self._day_names(volume)):
                    if name < limit and not (volume / name).is_symlink():
                        shutil.rmtree(volume / name, ignore_errors=True)
                        dropped.add(name)
            if dropped:
                self._sync_dir(self.root)
        return len(dropped)

    @staticmethod
    def segment_of(location: str) -> int | None:
        """The legacy segment number of a location written before per-day directories (None for a day's)."""
        return None if "/" in location else int(location.split(":", 1)[0])

    def release(self, locations: list[str], live_segments: set[int] | None = None) -> None:
        """Delete legacy segment files (in ``root``) that hold none of ``live_segments``."""
        if live_segments is None:
            return
        with self._lock:
            for path in self.root.glob("seg-*.dat"):
                if int(path.stem[4:]) not in live_segments:
                    path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            for _, fh in self._open_days.values():
                if fh is not None:
                    fh.close()
            self._open_days.clear()


def open_image_store(settings: Settings) -> SegmentImageStore:
    """The node's image store: ``data_dir/viid/segments`` plus the ``viid_image_volumes``."""
    return SegmentImageStore(Path(settings.data_dir) / "viid" / "segments", volumes=settings.viid_image_volumes)
