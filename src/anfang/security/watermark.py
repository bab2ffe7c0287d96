"""Traceable exports (导出水印): every file that leaves the system names who exported it, when, and by which request.

Each export gets a :class:`Mark` — a printable request id and a secret 48-bit fingerprint — and one row in the
export log (``export_log``: user, time, request, filters, the keys of the rows in the file, the fingerprint).

Visible watermark (deters, and names the file's owner on sight):
  XLSX  page header and footer on every sheet, and a watermark line on a second sheet 「导出水印」;
  CSV   a last line 「【导出水印】…」 (the importer skips it, so exports still re-import);
  PDF   a text line at the foot of every page;
  image a stamp in the bottom-right corner.
Invisible watermark (survives the visible one being cropped or the rows being copied elsewhere):
  XLSX / PDF / image document metadata (author, keywords ``anfang-fp:<fingerprint>``, custom property / PNG text
  chunk / JPEG comment and EXIF description), and, in XLSX and CSV, the fingerprint encoded in zero-width
  characters inside text cells of every row (see :data:`CARRIERS`), so a single row pasted into another file still
  carries it; PNG images also carry it in the least significant bits of the blue channel.

The zero-width code is hand-written (no maintained library does this small job): U+2060 WORD JOINER, then 56 bits
(48-bit fingerprint + CRC-8), two bits per character from U+200B / U+200C / U+200D / U+2063, then U+2060 — 30
invisible characters (90 bytes of UTF-8) in one carrier cell per row, the carrier column rotating row by row.
Spreadsheets, editors and clipboards keep these characters; ``str.strip()`` and Excel's TRIM() do not remove them.
The PNG least-significant-bit mark is hand-written too (a dozen lines over Pillow's pixel access; steganography
libraries are unmaintained or far larger than this need). The file formats themselves are written by openpyxl,
fpdf2 and Pillow.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from anfang.core import timefmt
from anfang.security.records import ExportRecord
from anfang.security.roles import role_label
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

CHINA_TZ = ZoneInfo("Asia/Shanghai")
WATERMARK_PREFIX = "【导出水印】"
META_TAG = "anfang-fp:"
# Two bits per invisible character: ZERO WIDTH SPACE, ZERO WIDTH NON-JOINER, ZERO WIDTH JOINER, INVISIBLE SEPARATOR.
ZW_SYMBOLS = "\u200b\u200c\u200d\u2063"
ZW0, ZW1 = ZW_SYMBOLS[0], ZW_SYMBOLS[1]
ZW_FRAME = "\u2060"  # WORD JOINER opens and closes the code
ZERO_WIDTH = frozenset({*ZW_SYMBOLS, ZW_FRAME, "\ufeff"})
_ZW_RE = re.compile(f"{ZW_FRAME}([{ZW_SYMBOLS}]{{28}}){ZW_FRAME}")
_STRIP = str.maketrans({c: None for c in ZERO_WIDTH})

# Text columns of each registry export that carry the zero-width fingerprint, one per row in turn (every row carries
# it; a file grows by ~90 bytes a row). They are never search
# keys (a name or an identity number copied from an export must still find its record) and the importer strips
# zero-width characters, so exports re-import cleanly.
CARRIERS: dict[str, tuple[str, ...]] = {
    "regions": ("full_name", "kind"),
    "addresses": ("full_name", "level", "plate_installed"),
    "persons": ("gender", "hukou_address", "population_type", "verification"),
    "houses": ("use", "owner_name", "verification"),
    "units": ("kind", "legal_person", "verification"),
    "vehicles": ("plate_color", "brand", "color"),
}
# The column whose value names the record in the export log's row keys (trace by pasted rows).
ROW_KEY: dict[str, str] = {"regions": "code", "addresses": "code", "persons": "record_id", "houses": "address_code",
                           "units": "credit_code", "vehicles": "plate"}


def strip_zero_width(text: str) -> str:
    """The text without the watermark's zero-width characters (and stray BOMs / joiners)."""
    return text.translate(_STRIP)


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def zw_encode(fingerprint: str) -> str:
    """The 48-bit fingerprint and its CRC-8 as 28 invisible characters between two word joiners."""
    raw = bytes.fromhex(fingerprint)
    bits = "".join(f"{b:08b}" for b in raw + bytes([_crc8(raw)]))
    return ZW_FRAME + "".join(ZW_SYMBOLS[int(bits[i:i + 2], 2)] for i in range(0, 56, 2)) + ZW_FRAME


def zw_decode_all(text: str) -> list[str]:
    """Every valid fingerprint hidden in text (checksum verified), in order of first appearance."""
    out: list[str] = []
    for m in _ZW_RE.finditer(text):
        bits = "".join(f"{ZW_SYMBOLS.index(c):02b}" for c in m.group(1))
        raw = int(bits, 2).to_bytes(7, "big")
        if _crc8(raw[:6]) == raw[6]:
            fp = raw[:6].hex()
            if fp not in out:
                out.append(fp)
    return out


@dataclass(frozen=True)
class Mark:
    """The watermark of one export."""

    request_id: str
    fingerprint: str  # 12 hex digits, secret until someone traces the file
    username: str
    display_name: str
    role: str
    at: datetime
    kind: str
    file_format: str
    filename: str = ""
    reason: str | None = None
    approval_id: int | None = None
    client: str | None = None
    user_id: int | None = None
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def local_time(self) -> str:
        return timefmt.fmt(self.at)

    def visible_line(self) -> str:
        """One line naming the exporter, the time (Beijing) and the request: printed on the file."""
        who = f"{self.display_name}（{self.username}，{role_label(self.role)}）"
        zh = f"{WATERMARK_PREFIX}{who} 于 {self.local_time} 导出，请求号 {self.request_id}；仅限工作使用，严禁外传"
        en_time = timefmt.fmt(self.at, "en")
        return f"{zh} / exported by {self.username} at {en_time}, request {self.request_id}; do not share"

    def short_line(self) -> str:
        """Short ASCII-safe line for image stamps and narrow footers."""
        return f"{self.username} {self.local_time} {self.request_id}"

    def zw(self) -> str:
        return zw_encode(self.fingerprint)

    def embed(self, text: Any) -> Any:
        """text with the zero-width fingerprint inside (after the first character; alone when text is empty)."""
        if text is None or text == "":
            return self.zw()
        if not isinstance(text, str):
            return text
        return text[:1] + self.zw() + text[1:]

    def meta_keywords(self) -> str:
        return f"{META_TAG}{self.fingerprint} request:{self.request_id}"


def new_mark(store: Store, p: Principal, kind: str, file_format: str, filename: str = "", *,
             reason: str | None = None, approval_id: int | None = None,
             filters: dict[str, Any] | None = None) -> Mark:
    """A fresh watermark for one export by p (not yet logged: call :func:`log_export` once the file is written)."""
    display = p.username
    if p.user_id is not None:
        from anfang.security.models import User

        with store.session() as s:
            u = s.get(User, p.user_id)
            display = u.display_name if u else p.username
    at = utcnow()
    request_id = f"EX{at.astimezone(CHINA_TZ):%Y%m%d}-{secrets.token_hex(3).upper()}"
    return Mark(request_id=request_id, fingerprint=secrets.token_hex(6), username=p.username, display_name=display,
                role=p.role.value, at=at, kind=kind, file_format=file_format, filename=filename[:200], reason=reason,
                approval_id=approval_id, client=p.client, user_id=p.user_id,
                filters={k: str(v) for k, v in (filters or {}).items() if v not in (None, "")})


def log_export(store: Store, mark: Mark, rows: int = 0, row_keys: Iterable[Any] = ()) -> None:
    """Record the export in the export log (one row per file)."""
    rec = ExportRecord(request_id=mark.request_id, fingerprint=mark.fingerprint, at=mark.at, user_id=mark.user_id,
                       username=mark.username, display_name=mark.display_name, role=mark.role, client=mark.client,
                       kind=mark.kind, file_format=mark.file_format, filename=mark.filename, rows=rows,
                       row_keys=[str(k) for k in row_keys], filters=mark.filters, approval_id=mark.approval_id,
                       reason=mark.reason)
    try:
        with store.session() as s:
            s.add(rec)
    except IntegrityError:  # a 48-bit collision: astronomically rare, but never log two files under one mark
        raise RuntimeError("export fingerprint collision; export again") from None


# ---- XLSX ---------------------------------------------------------------------------------------------------------
def xlsx_decorate(wb: Any, mark: Mark, sheets: Iterable[Any] | None = None) -> None:
    """Visible header/footer on the given worksheets (default: all), a 「导出水印」 sheet with the watermark line, and
    the invisible document metadata. Works on normal and write-only openpyxl workbooks (call before saving)."""
    from openpyxl.packaging.custom import StringProperty

    # Excel limits a header/footer to 255 characters and reads "&" as a code: the Chinese half, "&" doubled
    header = mark.visible_line().split(" / exported by")[0].replace("&", "&&")[:250]
    for ws in list(sheets) if sheets is not None else list(wb.worksheets):
        ws.oddHeader.center.text = header
        ws.oddHeader.center.size = 8
        ws.oddFooter.center.text = f"{mark.short_line().replace('&', '&&')[:200]}  &P/&N"
        ws.oddFooter.center.size = 8
    info = wb.create_sheet("导出水印")
    info.append([mark.visible_line()])
    info.append(["导出人 / user", f"{mark.display_name}（{mark.username}）"])
    info.append(["时间 / time", mark.local_time])
    info.append(["请求号 / request", mark.request_id])
    if mark.reason:
        info.append(["事由 / reason", mark.reason])
    if mark.approval_id:
        info.append(["审批申请 / approval", f"#{mark.approval_id}"])
    props = wb.properties
    props.creator = f"anfang · {mark.username}"
    props.lastModifiedBy = mark.username
    props.title = f"{mark.kind} {mark.request_id}"
    props.subject = mark.visible_line()[:250]
    props.keywords = mark.meta_keywords()
    props.description = f"request {mark.request_id} by {mark.username} at {mark.at.isoformat()}"
    props.created = mark.at.replace(tzinfo=None)
    wb.custom_doc_props.append(StringProperty(name="anfang_request", value=mark.request_id))
    wb.custom_doc_props.append(StringProperty(name="anfang_fingerprint", value=mark.fingerprint))


def watermark_xlsx_bytes(data: bytes, mark: Mark, carry_text: bool = True) -> bytes:
    """Watermark an already built XLSX (small reports): decorate it and hide the fingerprint in its text cells."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data))
    sheets = list(wb.worksheets)
    if carry_text:
        for ws in sheets:
            for row in ws.iter_rows():
                # one carrier per row, its last text cell: titles and key columns (first cells) stay as typed
                texts = [c for c in row if isinstance(c.value, str) and c.value and not c.value.startswith("=")]
                if texts:
                    texts[-1].value = mark.embed(texts[-1].value)
    xlsx_decorate(wb, mark, sheets)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export_xlsx_bytes(store: Store, p: Principal, data: bytes, kind: str, filename: str = "") -> bytes:
    """Watermark a small report built elsewhere (e.g. the construction circular) for p, and log the export."""
    mark = new_mark(store, p, kind, "xlsx", filename)
    out = watermark_xlsx_bytes(data, mark)
    log_export(store, mark, 0, [])
    return out


# ---- PDF (fpdf2) ----------------------------------------------------------------------------------------------------
def pdf_metadata(pdf: Any, mark: Mark) -> None:
    """Invisible watermark of an fpdf2 document: author, subject and keywords (call before output())."""
    pdf.set_author(f"anfang {mark.username}")
    pdf.set_subject(f"request {mark.request_id}")
    pdf.set_keywords(mark.meta_keywords())
    pdf.set_creator(f"anfang {META_TAG}{mark.fingerprint}")


def pdf_stamp_page(pdf: Any, mark: Mark, font_family: str | None = None) -> None:
    """The visible line at the foot of the current page (fpdf2, unit mm). Restores position and colour."""
    x, y = pdf.get_x(), pdf.get_y()
    family = font_family or "helvetica"
    line = mark.visible_line() if font_family else mark.short_line()
    pdf.set_font(family, size=6.5)
    pdf.set_text_color(150, 150, 150)
    pdf.set_xy(8, pdf.h - 7)
    pdf.cell(pdf.w - 16, 4, line, align="C")
    pdf.set_text_color(0, 0, 0)
    pdf.set_xy(x, y)


# ---- images (Pillow) ------------------------------------------------------------------------------------------------
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        from anfang.core.fonts import find_cjk_font

        path, index = find_cjk_font()
        return ImageFont.truetype(str(path), size=size, index=index), True
    except Exception:  # noqa: BLE001 - no CJK font: Pillow's built-in font and an ASCII stamp
        return ImageFont.load_default(size=size), False


def _lsb_embed(img: Any, payload: bytes) -> Any:
    """Hide payload in the least significant bit of the blue channel, row-major."""
    img = img.convert("RGB")
    bits = "".join(f"{b:08b}" for b in payload)
    px = img.load()
    w, h = img.size
    for i in range(min(w * h, len(bits))):
        x, y = i % w, i // w
        r, g, b = px[x, y]
        px[x, y] = (r, g, (b & ~1) | (bits[i] == "1"))
    return img


def lsb_extract(img: Any) -> str | None:
    """The fingerprint hidden by :func:`_lsb_embed` in a PNG, if present and its checksum holds."""
    img = img.convert("RGB")
    w, h = img.size
    need = 8 * (len(META_TAG) + 7)
    if w * h < need:
        return None
    px = img.load()
    bits = "".join(str(px[i % w, i // w][2] & 1) for i in range(need))
    raw = int(bits, 2).to_bytes(need // 8, "big")
    if not raw.startswith(META_TAG.encode()):
        return None
    body = raw[len(META_TAG):]
    return body[:6].hex() if _crc8(body[:6]) == body[6] else None


def watermark_image(data: bytes, mark: Mark) -> tuple[bytes, str]:
    """A corner stamp (user, time, request) plus metadata, and for PNG the LSB mark; returns (bytes, media type).
    JPEG stays JPEG (quality 92) so captures do not grow; PNG stays PNG."""
    from PIL import Image, ImageDraw, PngImagePlugin

    src = Image.open(io.BytesIO(data))
    fmt = (src.format or "JPEG").upper()
    img = src.convert("RGB")
    w, h = img.size
    size = max(10, min(w, h) // 28)
    font, cjk = _font(size)
    text = f"{mark.display_name if cjk else mark.username} {mark.local_time}\n{mark.request_id}"
    draw = ImageDraw.Draw(img)
    box = draw.multiline_textbbox((0, 0), text, font=font, spacing=2)
    tw, th = box[2] - box[0], box[3] - box[1]
    x, y = max(2, w - tw - size // 2 - 4), max(2, h - th - size // 2 - 4)
    draw.rectangle((x - 4, y - 3, x + tw + 4, y + th + 5), fill=(0, 0, 0))
    draw.multiline_text((x, y - box[1]), text, fill=(255, 255, 255), font=font, spacing=2)
    out = io.BytesIO()
    payload = META_TAG.encode() + bytes.fromhex(mark.fingerprint) + bytes([_crc8(bytes.fromhex(mark.fingerprint))])
    if fmt == "PNG":
        img = _lsb_embed(img, payload)
        info = PngImagePlugin.PngInfo()
        info.add_text("anfang", mark.meta_keywords())
        info.add_text("Author", mark.username)
        img.save(out, "PNG", pnginfo=info)
        return out.getvalue(), "image/png"
    exif = Image.Exif()
    exif[0x010E] = mark.meta_keywords()  # ImageDescription
    exif[0x013B] = mark.username  # Artist
    img.save(out, "JPEG", quality=92, comment=mark.meta_keywords().encode(), exif=exif)
    return out.getvalue(), "image/jpeg"


VIEW_FORMAT = "view"  # export-log file_format of an image shown on screen: fingerprinted, traceable, not an export


def export_image(store: Store, p: Principal, data: bytes, kind: str, filename: str = "",
                 row_keys: Iterable[Any] = (), *, view: bool = False) -> tuple[bytes, str]:
    """Watermark one image for p and log it; returns (bytes, media type). An image that cannot be decoded is not
    served unmarked (fail closed): a clear 422. ``view``: shown on a page, not downloaded - its mark is kept so a
    leaked copy still traces (file_format "view"), but it is no export: 我的导出记录 lists downloads only, and the
    caller records the view in the audit chain."""
    from anfang.core.errors import ValidationError

    mark = new_mark(store, p, kind, VIEW_FORMAT if view else "image", filename)
    try:
        out, media = watermark_image(data, mark)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on bad input
        raise ValidationError(f"图像无法解码，未能加水印，不予提供 / image cannot be watermarked ({type(exc).__name__})"
                              ) from None
    log_export(store, mark, 1, row_keys)
    return out, media
