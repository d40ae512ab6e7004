"""Result rows as a table of chosen columns: the same table for the terminal and for the report page."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate


def column_table(rows: list[dict], columns: Sequence[tuple[str, str]], tablefmt: str = "simple") -> str:
    """`columns` are (title, key) pairs; a missing or None value shows as "-"."""
    return tabulate(
        [[row.get(key) for _, key in columns] for row in rows],
        headers=[title for title, _ in columns],
        tablefmt=tablefmt,
        floatfmt=".3f",
        missingval="-",
    )
