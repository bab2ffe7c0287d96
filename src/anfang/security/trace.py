"""Tracing a leaked file (泄露溯源): who exported it, when, and by which request — with the evidence.

Reads what anfang.security.watermark hid in a file, and matches it against the export log:
  strong  the zero-width fingerprint in text cells (XLSX, CSV, pasted rows in any text file), the document
          metadata (XLSX properties, PDF Info dictionary, PNG text / JPEG comment / EXIF), the PNG LSB mark;
  medium  a visible request number (EXyyyymmdd-XXXXXX) found in the text (visible, so it may have been copied);
  weak    the file's record keys (系统编号, codes, plates) overlapping the row keys an export log entry recorded.
A fingerprint is 48 random bits known only to the export log, so a strong match cannot be forged by reading
someone else's file without also holding it.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from anfang.core import timefmt
from anfang.security.records import ExportRecord
from anfang.security.roles import role_label
from anfang.security.watermark import META_TAG, lsb_extract, strip_zero_width, zw_decode_all
from anfang.store.engine import Store

_META_RE = re.compile(re.escape(META_TAG).encode() + rb"([0-9a-f]{12})")
_REQUEST_RE = re.compile(r"EX\d{8}-[0-9A-F]{6}")
MIN_KEY_OVERLAP = 2
MAX_ROWS = 200_000  # rows read from a file: plenty to find marks (every row carries one) and row keys


@dataclass
class Evidence:
    method: str  # zero_width | metadata | lsb | request_id | row_keys
    strength: str  # strong | medium | weak
    detail: str


@dataclass
class Finding:
    request_id: str
    username: str
    display_name: str
    role: str
    at: str  # Beijing time
    kind: str
    file_format: str
    filename: str
    rows: int
    reason: str | None
    approval_id: int | None
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def strength(self) -> str:
        found = {e.strength for e in self.evidence}
        return next((s for s in ("strong", "medium", "weak") if s in found), "weak")

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "username": self.username, "display_name": self.display_name,
                "role": self.role, "role_label": role_label(self.role), "at": self.at, "kind": self.kind,
                "file_format": self.file_format, "filename": self.filename, "rows": self.rows,
                "reason": self.reason, "approval_id": self.approval_id, "strength": self.strength,
                "evidence": [e.__dict__ for e in self.evidence]}


@dataclass
class TraceResult:
    file: str
    file_type: str
    findings: list[Finding]
    unknown: list[str]  # fingerprints or request numbers found in the file but absent from the export log
    notes: list[str]

    @property
    def best(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "file_type": self.file_type, "findings": [f.to_dict() for f in self.findings],
                "unknown": self.unknown, "notes": self.notes}


@dataclass
class _Clues:
    fingerprints: Counter = field(default_factory=Counter)  # fingerprint -> rows / cells carrying it
    meta: dict[str, str] = field(default_factory=dict)  # fingerprint -> where in the metadata
    lsb: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)  # cell values, for row-key matching
    notes: list[str] = field(default_factory=list)


# ---- reading clues out of a file -------------------------------------------------------------------------------
def _scan_text_rows(rows: list[list[str]], c: _Clues) -> None:
    for row in rows:
        found: set[str] = set()
        for cell in row:
            if not cell:
                continue
            found.update(zw_decode_all(cell))
            plain = strip_zero_width(cell)
            c.request_ids.update(_REQUEST_RE.findall(plain))
            token = plain.strip()
            if token:
                c.tokens.add(token)
        for fp in found:
            c.fingerprints[fp] += 1


def _from_xlsx(data: bytes, c: _Clues) -> None:
    from openpyxl import load_workbook

    # read-only: a leaked workbook may hold millions of rows (the header/footer are not readable this way; the
    # request number is also on the 「导出水印」 sheet)
    wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    props = wb.properties
    for where, value in (("keywords", props.keywords), ("creator", props.creator), ("subject", props.subject),
                         ("description", props.description)):
        for m in _META_RE.finditer((value or "").encode()):
            c.meta[m.group(1).decode()] = f"XLSX 文档属性 {where}"
        c.request_ids.update(_REQUEST_RE.findall(value or ""))
    for prop in getattr(wb.custom_doc_props, "props", []):
        if prop.name == "anfang_fingerprint" and re.fullmatch(r"[0-9a-f]{12}", str(prop.value)):
            c.meta.setdefault(str(prop.value), "XLSX 自定义属性 anfang_fingerprint")
    budget = MAX_ROWS
    for ws in wb.worksheets:
        rows = []
        for r in ws.iter_rows(values_only=True):
            if budget <= 0:
                c.notes.append(f"仅检查了前 {MAX_ROWS} 行 / only the first {MAX_ROWS} rows were read")
                break
            rows.append(["" if v is None else str(v) for v in r])
            budget -= 1
        _scan_text_rows(rows, c)
    wb.close()


def _from_pdf(data: bytes, c: _Clues) -> None:
    # fpdf2 writes the Info dictionary (keywords, creator) as plain ASCII strings: no PDF parser is needed.
    for m in _META_RE.finditer(data):
        c.meta[m.group(1).decode()] = "PDF 文档信息 Keywords/Creator"
    c.request_ids.update(x.decode() for x in re.findall(rb"EX\d{8}-[0-9A-F]{6}", data))
    c.notes.append("PDF 正文为字形编码，按文档信息溯源 / PDF traced by its document information")


def _from_image(data: bytes, c: _Clues) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    texts = [str(v) for k, v in img.info.items() if isinstance(v, str | bytes) and k != "icc_profile"]
    texts = [t.decode("latin-1") if isinstance(t, bytes) else t for t in texts]
    try:
        exif = img.getexif()
        texts += [str(exif.get(0x010E) or ""), str(exif.get(0x013B) or "")]
    except Exception:  # noqa: BLE001 - unreadable EXIF is simply no clue
        pass
    for t in texts:
        for m in _META_RE.finditer(t.encode("utf-8", "ignore")):
            c.meta[m.group(1).decode()] = "图像元数据（PNG 文本块 / JPEG 注释 / EXIF）"
        c.request_ids.update(_REQUEST_RE.findall(t))
    if (img.format or "").upper() == "PNG":
        fp = lsb_extract(img)
        if fp:
            c.lsb.add(fp)
    else:
        c.notes.append("JPEG 再压缩会去掉像素级标记；元数据被清除时只能凭可见角标辨认 / a re-encoded JPEG keeps "
                       "only the visible stamp once its metadata is stripped")


def _from_video(data: bytes, c: _Clues) -> None:
    """MP4 (a downloaded recording): the container's metadata (comment / title) carries the mark."""
    import av

    with av.open(io.BytesIO(data)) as container:
        texts = [str(v) for v in container.metadata.values()]
    for t in texts:
        for m in _META_RE.finditer(t.encode("utf-8", "ignore")):
            c.meta[m.group(1).decode()] = "视频元数据（MP4 comment/title） / video metadata"
        c.request_ids.update(_REQUEST_RE.findall(t))
    c.notes.append("视频画面带可见水印（导出人、时间、请求号） / the picture carries the visible mark")


def _decode_text(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace")


def _from_text(data: bytes, c: _Clues) -> None:
    text = _decode_text(data)
    lines = text.splitlines()
    if len(lines) > MAX_ROWS:
        c.notes.append(f"仅检查了前 {MAX_ROWS} 行 / only the first {MAX_ROWS} rows were read")
        lines = lines[:MAX_ROWS]
        text = "\n".join(lines)
    sample = "\n".join(lines[:20])
    try:
        dialect = csv.Sniffer().sniff(strip_zero_width(sample), delimiters=",\t;|")
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error:
        rows = [re.split(r"[,\t;|]|\s{2,}", line) for line in lines]
    _scan_text_rows(rows, c)
    for m in _META_RE.finditer(strip_zero_width(text).encode()):
        c.meta.setdefault(m.group(1).decode(), "文本中的指纹标记")


def _file_type(data: bytes, name: str) -> str:
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if any(n.startswith("xl/") for n in z.namelist()):
                    return "xlsx"
        except zipfile.BadZipFile:
            pass
    if data[:5] == b"%PDF-":
        return "pdf"
    if data[4:8] == b"ftyp":
        return "video"
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff":
        return "image"
    return "csv" if name.lower().endswith(".csv") else "text"


# ---- matching against the export log ---------------------------------------------------------------------------
def _finding(r: ExportRecord) -> Finding:
    return Finding(request_id=r.request_id, username=r.username, display_name=r.display_name, role=r.role,
                   at=timefmt.fmt(r.at), kind=r.kind,
                   file_format=r.file_format, filename=r.filename, rows=r.rows, reason=r.reason,
                   approval_id=r.approval_id)


def trace_bytes(store: Store, data: bytes, filename: str = "") -> TraceResult:
    """Trace a file's content (XLSX, CSV, PDF, PNG/JPEG, or any text with pasted rows)."""
    ftype = _file_type(data, filename)
    c = _Clues()
    try:
        {"xlsx": _from_xlsx, "pdf": _from_pdf, "image": _from_image,
         "video": _from_video}.get(ftype, _from_text)(data, c)
    except Exception as exc:  # noqa: BLE001 - a damaged file: fall back to reading it as text
        c.notes.append(f"文件无法按 {ftype} 解析（{type(exc).__name__}），按文本读取 / read as text")
        ftype = "text"
        _from_text(data, c)
    fps = set(c.fingerprints) | set(c.meta) | c.lsb
    findings: dict[str, Finding] = {}
    unknown: list[str] = []
    with store.session() as s:
        if fps:
            records = list(s.scalars(select(ExportRecord).where(ExportRecord.fingerprint.in_(fps))))
            for r in records:
                f = findings.setdefault(r.request_id, _finding(r))
                if (n := c.fingerprints.get(r.fingerprint)):
                    f.evidence.append(Evidence("zero_width", "strong", f"{n} 行文本中的零宽字符指纹 {r.fingerprint} / "
                                                                       f"zero-width fingerprint in {n} row(s)"))
                if r.fingerprint in c.meta:
                    f.evidence.append(Evidence("metadata", "strong", f"{c.meta[r.fingerprint]}：指纹 {r.fingerprint}"))
                if r.fingerprint in c.lsb:
                    f.evidence.append(Evidence("lsb", "strong", f"像素最低位指纹 {r.fingerprint} / pixel LSB mark"))
            unknown += sorted(fps - {r.fingerprint for r in records})
        if c.request_ids:
            for r in s.scalars(select(ExportRecord).where(ExportRecord.request_id.in_(c.request_ids))):
                f = findings.setdefault(r.request_id, _finding(r))
                f.evidence.append(Evidence("request_id", "medium",
                                           f"文件中可见的请求号 {r.request_id} / visible request number"))
            known = {f_.request_id for f_ in findings.values()}
            unknown += sorted(x for x in c.request_ids if x not in known)
        if c.tokens:
            if findings:  # the marks name the export: its row keys only corroborate
                _corroborate(s, c.tokens, findings)
            else:  # no mark survived: which exports held these records (a lead, not proof)
                _match_row_keys(s, c.tokens, findings)
    ranked = sorted(findings.values(), key=lambda f: (("strong", "medium", "weak").index(f.strength),
                                                      -len(f.evidence)))
    if not ranked:
        c.notes.append("未发现导出水印，也无与导出记录相符的记录键 / no watermark and no matching row keys found")
    return TraceResult(file=filename, file_type=ftype, findings=ranked, unknown=unknown, notes=c.notes)


def _match_row_keys(s: Any, tokens: set[str], findings: dict[str, Finding], limit: int = 5) -> None:
    """Weak evidence: exports whose recorded row keys overlap the file's cell values."""
    scores: list[tuple[int, ExportRecord]] = []
    for r in s.scalars(select(ExportRecord).where(ExportRecord.rows > 0).order_by(ExportRecord.id.desc())
                       .limit(20000)):
        keys = set(r.row_keys or [])
        hit = len(keys & tokens)
        if hit >= MIN_KEY_OVERLAP:
            scores.append((hit, r))
    scores.sort(key=lambda x: (-x[0], len(x[1].row_keys or [])))
    for hit, r in scores[:limit]:
        f = findings.get(r.request_id)
        detail = f"文件中 {hit} 个记录键在该次导出的 {r.rows} 行中 / {hit} record keys were in this export"
        if f is None:
            f = findings[r.request_id] = _finding(r)
        f.evidence.append(Evidence("row_keys", "weak", detail))


def _corroborate(s: Any, tokens: set[str], findings: dict[str, Finding]) -> None:
    for r in s.scalars(select(ExportRecord).where(ExportRecord.request_id.in_(list(findings)))):
        hit = len(set(r.row_keys or []) & tokens)
        if hit:
            findings[r.request_id].evidence.append(Evidence(
                "row_keys", "weak", f"文件中 {hit} 个记录键在该次导出的 {r.rows} 行中 / {hit} record keys match"))


def trace_file(store: Store, path: Path | str) -> TraceResult:
    path = Path(path)
    return trace_bytes(store, path.read_bytes(), path.name)
