"""Reading the file: CSV (UTF-8 or GB18030, detected) or XLSX rows as text cells."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from anfang.core.errors import ValidationError
from anfang.security.watermark import WATERMARK_PREFIX, ZERO_WIDTH, strip_zero_width


# ---- reading files -----------------------------------------------------------------------------------------------
def _detect_encoding(path: Path) -> tuple[str, int]:
    """('utf-8-sig' | 'gb18030', number of newline bytes). UTF-8 unless the bytes are not valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    encoding, newlines, evidence = "utf-8-sig", 0, 0
    last = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
            if encoding == "utf-8-sig" and evidence < 4:
                try:
                    decoder.decode(chunk)
                    evidence += not chunk.isascii()
                except UnicodeDecodeError:
                    encoding = "gb18030"
    if last and last != b"\n":
        newlines += 1
    return encoding, newlines


def _as_typed(text: str) -> str:
    """A text cell without what an export added: the invisible watermark (anfang.security.watermark) and the
    apostrophe before formula-like text (anfang.registry.exporter.neutralise), so a re-import is idempotent."""
    if not text.isascii() and _ZERO_WIDTH_ANY.search(text):  # the common cell has none: one C-level scan
        text = strip_zero_width(text)
    return text[1:] if text[:1] == "'" and text[1:2] and text[1] in "=+-@\t\r" else text


_ZERO_WIDTH_ANY = re.compile("[" + "".join(sorted(ZERO_WIDTH)) + "]")


def _cell_text(v: Any) -> str:
    """Text of an XLSX cell as the user typed it (numbers without a trailing .0, dates as YYYY-MM-DD)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return _as_typed(v)
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, datetime):
        return v.date().isoformat() if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0) else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


@dataclass
class _Source:
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]  # (row number, cells)
    estimated_rows: int
    close: Callable[[], None]


def read_rows(path: Path) -> _Source:
    """Open a CSV (UTF-8 with or without BOM, or GB18030) or XLSX file: header row, then numbered data rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise ValidationError(f"无法读取 Excel 文件：{exc} / cannot read the XLSX file") from None
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        first = next(it, None)
        if first is None:
            wb.close()
            raise ValidationError("文件为空 / the file is empty")
        header = [_cell_text(v).strip() for v in first]
        estimated = max((ws.max_row or 1) - 1, 0)

        def xrows() -> Iterator[tuple[int, list[str]]]:
            for n, row in enumerate(it, start=2):
                cells = [_cell_text(v) for v in row]
                if cells and cells[0].startswith(WATERMARK_PREFIX):
                    continue  # an export's visible watermark line
                yield n, cells

        return _Source(header, xrows(), estimated, wb.close)
    if suffix not in (".csv", ".txt"):
        raise ValidationError(f"不支持的文件类型：{path.suffix}（请使用 CSV 或 XLSX） / unsupported file type")
    encoding, newlines = _detect_encoding(path)
    f = path.open("r", encoding=encoding, newline="")
    reader = csv.reader(f)
    try:
        first = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        f.close()
        raise ValidationError(f"无法读取 CSV 文件：{exc} / cannot read the CSV file") from None
    if first is None:
        f.close()
        raise ValidationError("文件为空 / the file is empty")
    header = [h.replace("\ufeff", "").strip() for h in first]

    def crows() -> Iterator[tuple[int, list[str]]]:
        try:
            for n, cells in enumerate(reader, start=2):
                if cells and cells[0].startswith(WATERMARK_PREFIX):
                    continue  # an export's visible watermark line
                row = "".join(cells)  # most rows need no cleaning: one check of the whole row first
                if "'" in row or (not row.isascii() and _ZERO_WIDTH_ANY.search(row)):
                    cells = [_as_typed(c) for c in cells]
                yield n, cells
        except UnicodeDecodeError:
            raise ValidationError("文件编码无法识别（请保存为 UTF-8 或 GB18030） / unknown encoding") from None
        except csv.Error as exc:
            raise ValidationError(f"CSV 格式错误（第{reader.line_num}行附近）：{exc}") from None

    return _Source(header, crows(), max(newlines - 1, 0), f.close)
