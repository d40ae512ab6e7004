import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from tests.trees import Tree

MURA = str(Path(sys.executable).parent / "mura")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MURA, *args], capture_output=True, text=True, timeout=300)


def test_sample_then_audit_accepts_every_image_of_seven_parts(tmp_path: Path) -> None:
    made = run("sample", "--out", str(tmp_path / "s"), "--studies-per-part", "20", "--max-side", "64")
    assert made.returncode == 0, made.stderr
    audited = run("audit", str(tmp_path / "s"))
    assert audited.returncode == 0, audited.stderr
    out = audited.stdout
    assert (
        sum(
            f"train XR_{part}" in out for part in ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")
        )
        == 7
    )
    images = sum(1 for _ in (tmp_path / "s").rglob("*.png"))
    assert f"{images} of {images} image rows accepted, 0 rejected" in out


def test_sample_refuses_to_overwrite_without_force(sample_root: Path, tmp_path: Path) -> None:
    shutil.copytree(sample_root, tmp_path / "copy")
    result = CliRunner().invoke(main, ["sample", "--out", str(tmp_path / "copy"), "--studies-per-part", "1"])
    assert result.exit_code != 0
    assert "already exists; pass --force" in result.output
    result = CliRunner().invoke(
        main, ["sample", "--out", str(tmp_path / "copy"), "--studies-per-part", "1", "--max-side", "48", "--force"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "copy").rglob("*.png"))) < len(list(sample_root.rglob("*.png")))


def broken_tree(tmp_path: Path) -> Path:
    t = Tree(tmp_path / "data")
    for n in range(1, 10):
        t.labeled_image(f"train/XR_HAND/patient{n:05d}/study1_negative/image1.png")
    t.labeled_image("valid/XR_HAND/patient00099/study1_negative/image1.png", split="valid")
    t.image("train/XR_HAND/patient00001/study1_negative/image2.png", data=b"")
    return t.write()


def test_audit_fails_above_the_bound_and_reports_every_rejected_row(tmp_path: Path) -> None:
    root, report = broken_tree(tmp_path), tmp_path / "rejected.csv"
    result = CliRunner().invoke(main, ["audit", str(root), "--rejected-report", str(report)])
    assert result.exit_code == 1
    assert "10 of 11 image rows accepted, 1 rejected (9.09%; bound 1.00%): too many rejected" in result.output
    assert "missing_file" in result.output
    with report.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["reason"], r["line"]) for r in rows] == [
        ("MURA-v1.1/train/XR_HAND/patient00001/study1_negative/image2.png", "missing_file", "10")
    ]


def test_audit_passes_under_a_looser_bound(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", str(broken_tree(tmp_path)), "--max-rejected-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    assert "1 rejected (9.09%; bound 10.00%)." in result.output


def test_audit_of_a_folder_that_is_not_mura_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", str(tmp_path)])
    assert result.exit_code == 1
    assert "missing train_image_paths.csv" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [[], ["audit"], ["sample"]])
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output) > 300
