"""Result rows as a table of chosen columns: the same table for the terminal and for the report page."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup
from tabulate import tabulate

Key = str | Callable[[dict], object]  # a row's field, or a function of the row (a cell made of several fields)
Column = tuple[str, Key]


def _cell(row: dict, key: Key) -> object:
    return key(row) if callable(key) else row.get(key)


def column_table(rows: list[dict], columns: Sequence[Column], tablefmt: str = "simple") -> str:
    """`columns` are (title, key) pairs; a missing or None value shows as "-"."""
    return tabulate(
        [[_cell(row, key) for _, key in columns] for row in rows],
        headers=[title for title, _ in columns],
        tablefmt=tablefmt,
        floatfmt=".3f",
        missingval="-",
    )


def html_table(rows: list[dict], columns: Sequence[Column]) -> Markup:
    """`rows` as an HTML table of `columns` ((title, key) pairs), for the pages' templates: tabulate's "html" format
    escapes every cell."""
    return Markup(column_table(rows, columns, tablefmt="html"))
