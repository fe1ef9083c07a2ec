"""A small column-oriented table without pandas: what the client returns for metrics."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A small column-oriented table without pandas: columns, rows, CSV."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None
    ) -> Table:
        """Rows from records; columns in first-seen order unless given (missing values are None)."""
        records = list(records)
        if columns is None:
            seen: dict[str, None] = {}
            for record in records:
                seen.update(dict.fromkeys(record))
            columns = seen
        names = list(columns)
        return cls(names, [[record.get(name) for name in names] for record in records])

    def column(self, name: str) -> list[Any]:
        """The values of one column."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_csv(self) -> str:
        """The table as CSV text with a header row (nested values as JSON)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(
                ["" if v is None else json.dumps(v) if isinstance(v, dict | list) else v for v in row]
            )
        return out.getvalue()

    def __len__(self) -> int:
        return len(self.rows)
