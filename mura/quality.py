"""The bounds that decide whether an ingested MURA root is usable: rejected share, non-empty splits."""

from __future__ import annotations

from collections.abc import Mapping


class DataQualityError(Exception):
    """The data cannot go on to training as it is; the message says why and where to look."""


def rejected_summary(accepted: int, rejected: int, rows: int, bound: float) -> str:
    share = rejected / rows if rows else 0.0
    return f"{accepted} of {rows} image rows accepted, {rejected} rejected ({share:.2%}; bound {bound:.2%})"


def check_rejected_fraction(accepted: int, rejected: int, rows: int, bound: float, report: str | None) -> str:
    """Returns the summary line, or raises when the rejected share is above the bound."""
    summary = rejected_summary(accepted, rejected, rows, bound)
    if rows and rejected / rows > bound:
        where = f" Every rejected row and its reason: {report}" if report else ""
        raise DataQualityError(f"{summary}: too many rejected.{where}")
    return summary


def check_splits_not_empty(counts: Mapping[str, int]) -> None:
    empty = [split for split, count in counts.items() if count == 0]
    if empty:
        raise DataQualityError(
            f"split(s) {', '.join(empty)} would be empty ({dict(counts)}). The test split is MURA's valid split; "
            "eval takes a share of train patients (raise the eval fraction, or add patients)."
        )
