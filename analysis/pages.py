"""The one jinja environment of the pages analysis writes (analysis/templates)."""

from __future__ import annotations

import jinja2

PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("analysis"), autoescape=True, trim_blocks=True, lstrip_blocks=True
)
