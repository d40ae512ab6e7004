import csv
import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from mura.config import SampleConfig
from mura.layout import BODY_PARTS, POSITIVE_RATE
from mura.reader import read_mura
from mura.synthetic.dataset import MANIFEST, plan_dataset, write_sample
from mura.synthetic.render import plan_study, render_view
from tests.conftest import TINY_SAMPLE


def read_like_a_stranger(root: Path) -> tuple[list[str], dict[str, int]]:
    """A reader written from MURA's published format alone: header-less CSVs, paths from the parent folder."""
    images, studies = [], {}
    for split in ("train", "valid"):
        with (root / "MURA-v1.1" / f"{split}_image_paths.csv").open() as handle:
            images += [row[0] for row in csv.reader(handle)]
        with (root / "MURA-v1.1" / f"{split}_labeled_studies.csv").open() as handle:
            studies.update({row[0]: int(row[1]) for row in csv.reader(handle)})
    return images, studies


def test_every_csv_path_is_on_disk_and_follows_the_published_format(sample_root: Path) -> None:
    images, studies = read_like_a_stranger(sample_root)
    assert all(path.startswith("MURA-v1.1/") for path in images + list(studies))
    assert all((sample_root / path).is_file() for path in images)
    assert all(path.endswith("/") and (sample_root / path).is_dir() for path in studies)
    assert all(path.rsplit("/", 1)[0] + "/" in studies for path in images)
    assert all(label == (1 if "_positive/" in path else 0) for path, label in studies.items())
    first_line = (sample_root / "MURA-v1.1" / "train_image_paths.csv").read_text().splitlines()[0]
    assert first_line.startswith("MURA-v1.1/train/XR_")  # no header row


def test_the_sample_has_mura_quirks(sample_root: Path) -> None:
    index = read_mura(sample_root, progress=False)
    assert index.rejected == []
    assert {r.body_part for r in index.images} == set(BODY_PARTS)
    assert {r.source_split for r in index.images} == {"train", "valid"}
    images_per_study = Counter(r.study_id for r in index.images)
    assert max(images_per_study.values()) > 1
    studies_per_patient = defaultdict(set)
    for r in index.images:
        studies_per_patient[r.patient_id].add(r.study_id)
    assert max(len(s) for s in studies_per_patient.values()) > 1
    assert {r.channels for r in index.images} == {1, 3}
    assert all(max(r.width, r.height) <= TINY_SAMPLE.max_side for r in index.images)
    assert len({(r.width, r.height) for r in index.images}) > 10


def test_positive_rates_follow_mura_per_body_part() -> None:
    specs = plan_dataset(SampleConfig(studies_per_part=200))
    for split in ("train", "valid"):
        for part in BODY_PARTS:
            labels = [s.label for s in specs if s.split == split and s.body_part == part]
            assert abs(np.mean(labels) - POSITIVE_RATE[split][part]) < 0.01


def test_patients_never_cross_splits_or_parts() -> None:
    owners = defaultdict(set)
    for spec in plan_dataset(SampleConfig(studies_per_part=50)):
        owners[spec.patient_number].add((spec.split, spec.body_part))
    assert all(len(o) == 1 for o in owners.values())


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_the_same_seed_gives_the_same_bytes_in_parallel_or_not(sample_root: Path, tmp_path: Path) -> None:
    write_sample(tmp_path / "again", TINY_SAMPLE, workers=2, progress=False)
    assert tree_digest(tmp_path / "again") == tree_digest(sample_root)
    other = SampleConfig(studies_per_part=TINY_SAMPLE.studies_per_part, seed=8, max_side=TINY_SAMPLE.max_side)
    write_sample(tmp_path / "other", other, workers=1, progress=False)
    assert tree_digest(tmp_path / "other") != tree_digest(sample_root)


def test_the_manifest_names_a_finding_for_every_abnormal_study(sample_root: Path) -> None:
    with (sample_root / MANIFEST).open() as handle:
        rows = list(csv.DictReader(handle))
    _, studies = read_like_a_stranger(sample_root)
    assert {r["study_path"]: int(r["label"]) for r in rows} == studies
    assert {r["finding"] for r in rows if r["label"] == "1"} <= {"fracture", "plate", "nail", "cast", "lesion"}
    assert {r["finding"] for r in rows if r["label"] == "0"} <= {"none", "jewellery"}


def test_findings_change_the_pixels_where_the_bone_is() -> None:
    """Same anatomy and view with and without a finding: the difference is local, not global."""
    for seed in range(5):
        normal = plan_study("XR_FOREARM", 0, np.random.default_rng(seed))
        abnormal = plan_study("XR_FOREARM", 1, np.random.default_rng(seed))
        a = render_view(normal, 160, 200, np.random.default_rng(100 + seed)).astype(int)
        b = render_view(abnormal, 160, 200, np.random.default_rng(100 + seed)).astype(int)
        changed = np.abs(a - b) > 40
        assert 0 < changed.mean() < 0.5


def test_images_look_like_radiographs(sample_root: Path) -> None:
    """Dark field, brighter bone: the darkest decile is dark and the brightest pixels stand well above it."""
    for path in sorted(sample_root.rglob("*.png"))[:20]:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert np.percentile(pixels, 10) < 90
        assert np.percentile(pixels, 99) - np.percentile(pixels, 10) > 70
