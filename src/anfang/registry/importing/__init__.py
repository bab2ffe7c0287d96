"""Bulk import of the 一标三实 registry from CSV or XLSX, with a row-level error report: one pipeline
(pipeline.py) and one importer per kind (regions.py, addresses.py, persons.py, houses.py, units.py, vehicles.py,
all on kind.py); reading (source.py), cell values (cells.py), writing (writer.py), the report (report.py).

Rules (docs/import-format.md is the user-facing version):

- Columns per kind are the table in anfang.registry.columns; headers may be Chinese or English.
- Every data row ends in exactly one of: inserted, updated, unchanged, or an error naming the row and the reason.
  Nothing is dropped silently; wholly blank rows are skipped and not counted.
- Records are matched on their natural key (identity number, address code, credit code, plate, region code) and
  upserted (INSERT ... ON CONFLICT DO UPDATE), so re-importing a file is idempotent: the second run reports every
  row as unchanged.
- A column missing from the file leaves that field of existing records untouched (new records get the default);
  a column present with a blank cell sets the field's default / empty value.
- A key that occurs twice in one file: the first row is imported, later rows are errors naming the first row.
  Two different records for one person in one file is a data fault the user should resolve, not a silent choice.
- Masked values (with ``*``, as written by export for roles that see masked data) are accepted when they match the
  stored value's mask, and then keep the stored value; a masked identity number needs the 系统编号 column.
- A county administrator may only import records whose address lies in his county; other rows are errors
  (超出辖区). Only roles in anfang.security.roles.BULK may import.
- Rows are written in batches of batch_size, committed every COMMIT_ROWS rows; a failure part-way leaves the
  committed rows imported, and re-running the file completes it (idempotent). One audit entry per import.

Speed (2.5 million persons from CSV into SQLite at > 20,000 rows/s on a 2-vCPU VM; benchmarks/bench_import.py):
the csv module; lookups loaded once per import (address code -> id); a large file is read and checked by two
parsing processes (every other chunk each), which for persons also probe which identity numbers are stored and
put the inserts of new persons in the driver's form; this process drops in-file duplicates, resolves the rest
against the stored records (one pre-select per batch) and writes: executemany of a compiled
INSERT ... ON CONFLICT DO UPDATE over plain tuples on SQLite, COPY into a staging table then
INSERT ... SELECT ... ON CONFLICT DO UPDATE on PostgreSQL.

Federation (docs/federation.md): these writes pass no store hook, so on a node with a parent (the store carries
the federation Outbox) the writer reads back each batch's inserted / updated records in the same transaction and
writes their outbox rows with the outbox's own envelope (Outbox.write_records); unchanged rows make none. A
standalone node skips all of it.
"""

from anfang.registry.columns import KINDS
from anfang.registry.importing.pipeline import import_file
from anfang.registry.importing.report import ImportReport, RowError
from anfang.registry.importing.source import read_rows

__all__ = ["KINDS", "ImportReport", "RowError", "import_file", "read_rows"]
