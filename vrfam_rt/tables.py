"""The one table renderer: rows of dicts, columns as (header, key, format spec).

`render(rows, columns)` is the aligned plain text the CLI prints;
`render(rows, columns, markdown=True)` the GitHub table that benchmarks/results holds.
A missing or None cell is left empty.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

Column = tuple[str, str, str]     # header, row key, format spec ("" for str())


def _cell(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    return "" if value is None else format(value, spec)


def render(rows: Iterable[dict[str, Any]], columns: Sequence[Column],
           markdown: bool = False) -> str:
    header = [h for h, _, _ in columns]
    body = [[_cell(row, k, f) for _, k, f in columns] for row in rows]
    if markdown:
        lines = [header, ["---"] * len(columns), *body]
        return "\n".join("| " + " | ".join(r) + " |" for r in lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(columns))]
    lines = [header, ["-" * w for w in widths], *body]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)
