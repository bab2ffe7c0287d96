"""What an import reports: one row error per bad row, the counts, and the error report file."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from anfang.registry.columns import (
    KIND_LABELS,
)


# ---- results -----------------------------------------------------------------------------------------------------
@dataclass
class RowError:
    row: int  # 1-based row number as the user sees it (header = 1, first data row = 2)
    reason: str  # zh-CN
    raw: dict  # header text -> original cell text


@dataclass
class ImportReport:
    kind: str
    total: int  # non-blank data rows
    inserted: int
    updated: int
    unchanged: int
    errors: list[RowError]
    seconds: float
    file: str = ""
    headers: list[str] = field(default_factory=list)  # the file's header row, for the error report
    ignored_columns: list[str] = field(default_factory=list)  # headers that match no column of the kind

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rows_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{KIND_LABELS[self.kind]}：共{self.total}行，新增{self.inserted}，更新{self.updated}，"
                f"未变{self.unchanged}，错误{len(self.errors)}（{self.seconds:.1f}秒）")

    def write_report(self, path: Path | str) -> Path:
        """Write the bad rows (row number, reason, original values) as CSV or XLSX (by the file suffix), so the
        user can fix them and import the report file itself: extra 行号/错误原因 columns are ignored on import."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from anfang.registry.exporter import neutralise  # the file's own cells may be formulas: written as text

        header = ["行号", "错误原因", *self.headers]
        rows = ([e.row, e.reason, *(neutralise(e.raw.get(h, "")) for h in self.headers)] for e in self.errors)
        if path.suffix.lower() == ".xlsx":
            from openpyxl import Workbook

            wb = Workbook(write_only=True)
            ws = wb.create_sheet("错误行")
            ws.append(header)
            for r in rows:
                ws.append(r)
            wb.save(path)
        else:
            with path.open("w", encoding="utf-8-sig", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
        return path


class RowFault(Exception):
    """A row cannot be imported; the message is the zh-CN reason shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Masked(str):
    """A cell value that is a mask (contains *): resolved against the stored value at write time."""
