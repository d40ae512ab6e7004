"""Tables that tell, before any training, what a MURA root holds and what was rejected from it."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from mura.layout import BODY_PARTS, SOURCE_SPLITS
from mura.reader import REASONS, ImageRecord, MuraIndex, Rejection
from mura.splits import PIPELINE_SPLITS


def _rate(records: list[ImageRecord]) -> str:
    return f"{100 * sum(r.label for r in records) / len(records):.1f}" if records else "-"


def _row(name: str, records: list[ImageRecord], rejected: int) -> list[object]:
    studies = {r.study_id for r in records}
    patients = {r.patient_id for r in records}
    abnormal_studies = {r.study_id for r in records if r.label}
    study_rate = f"{100 * len(abnormal_studies) / len(studies):.1f}" if studies else "-"
    return [name, len(records), rejected, _rate(records), len(studies), study_rate, len(patients)]


_HEADERS = ["", "images", "rejected", "abnormal img %", "studies", "abnormal study %", "patients"]


def source_table(index: MuraIndex) -> str:
    """Accepted and rejected images per MURA split and body part."""
    accepted: dict[tuple[str, str], list[ImageRecord]] = defaultdict(list)
    for record in index.images:
        accepted[(record.source_split, record.body_part)].append(record)
    rejected = Counter((r.source_split, r.body_part or "?") for r in index.rejected_images)
    rows: list[list[object]] = []
    for split in SOURCE_SPLITS:
        parts = list(BODY_PARTS) + (["?"] if rejected[(split, "?")] else [])
        for part in parts:
            rows.append(_row(f"{split} {part}", accepted[(split, part)], rejected[(split, part)]))
        everything = [r for r in index.images if r.source_split == split]
        rows.append(_row(f"{split} all", everything, sum(n for (s, _), n in rejected.items() if s == split)))
    return tabulate(rows, headers=_HEADERS, tablefmt="simple")


def pipeline_table(index: MuraIndex) -> str:
    """The patient-level train/eval/test splits the pipeline will see."""
    rows = [_row(split, [r for r in index.images if r.split == split], 0) for split in PIPELINE_SPLITS]
    return tabulate([row[:2] + row[3:] for row in rows], headers=_HEADERS[:2] + _HEADERS[3:], tablefmt="simple")


def reasons_table(rejected: Iterable[Rejection]) -> str:
    counts = Counter(r.reason for r in rejected)
    return tabulate(
        [[reason, n, REASONS[reason]] for reason, n in counts.most_common()],
        headers=["reason", "rows", "meaning"],
        tablefmt="simple",
    )


def format_rejections(rejected: Iterable[Rejection]) -> str:
    """The rejected-rows report as CSV text: path,reason first, then what helps fixing the row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason", "detail", "csv_file", "line"])
    writer.writerows([r.path, r.reason, r.detail, r.csv_file, r.line] for r in rejected)
    return buffer.getvalue()
