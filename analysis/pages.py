"""The HTML pages' shared parts: one jinja environment over analysis/templates, and tables as HTML."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
from markupsafe import Markup

from mura.tables import column_table

PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("analysis"), autoescape=True, trim_blocks=True, lstrip_blocks=True
)


def html_table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> Markup:
    """`rows` as an HTML table of `columns` ((title, key) pairs); tabulate's "html" format escapes every cell."""
    return Markup(column_table(rows, columns, tablefmt="html"))
