"""Bulk import of the 一标三实 registry: the public entry points of anfang.registry.importing (one pipeline and one
importer per kind), kept at this path for callers (the CLI, the console, the federation, benchmarks)."""

from anfang.registry.importing import KINDS, ImportReport, RowError, import_file, read_rows
from anfang.registry.importing.source import _as_typed  # the cell typing rule, tested on its own

__all__ = ["KINDS", "ImportReport", "RowError", "_as_typed", "import_file", "read_rows"]
