"""CSV downloads that a spreadsheet opens as data, never as formulas."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

# A cell starting with one of these runs as a formula in Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """Text that would start a formula gets a leading apostrophe; numbers are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(columns: list[str], rows: Iterable[dict[str, Any]]) -> str:
    """A header and one line per row (missing cells empty), every text cell neutralized."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([neutralize(column) for column in columns])
    for row in rows:
        writer.writerow([neutralize(row.get(column, "")) for column in columns])
    return buffer.getvalue()
