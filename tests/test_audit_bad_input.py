"""`mura audit` on bytes a user's copy of MURA may really hold: a report, never a traceback."""

import csv
from pathlib import Path

from click.testing import CliRunner

from cli.main import main
from tests.trees import Tree, png_bytes

TRUNCATED = "train/XR_HAND/patient00004/study1_negative/image1.png"


def test_audit_reports_a_non_utf8_row_and_a_truncated_png_without_a_traceback(tmp_path: Path) -> None:
    t = Tree(tmp_path / "data")
    for n in range(1, 4):
        t.labeled_image(f"train/XR_HAND/patient{n:05d}/study1_negative/image1.png")
    t.study(TRUNCATED.rsplit("/", 1)[0], 0).image(TRUNCATED, data=png_bytes()[:-12])
    root = t.write()
    with (t.dataset / "train_image_paths.csv").open("ab") as handle:
        handle.write(b"MURA-v1.1/train/XR_HAND/patient\xe9/study1_negative/image1.png\n")
    report = tmp_path / "rejected.csv"
    result = CliRunner().invoke(main, ["audit", str(root), "--rejected-report", str(report)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1  # 2 of 5 rows rejected: over the bound, said as an error, not a crash
    assert "Traceback" not in result.output
    assert "3 of 5 image rows accepted, 2 rejected" in result.output
    assert "corrupt_image" in result.output and "malformed_row" in result.output
    with report.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["reason"], r["line"], r["detail"]) for r in rows] == [
        ("corrupt_image", "4", "truncated: no IEND chunk at the end of the PNG"),
        ("malformed_row", "5", "not valid UTF-8 at byte 32"),
    ]
    assert rows[1]["path"] == "MURA-v1.1/train/XR_HAND/patient\\xe9/study1_negative/image1.png"
