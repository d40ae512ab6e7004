"""The MURA-v1.1 release as published: folder names, CSV files, path grammar and per-part label rates."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DATASET_DIR = "MURA-v1.1"
SOURCE_SPLITS = ("train", "valid")
BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)

# Share of abnormal images per body part in each MURA split (mura.md, "Counts": abnormal/normal).
_COUNTS = {
    "train": {
        "XR_ELBOW": (2006, 2925),
        "XR_FINGER": (1968, 3138),
        "XR_FOREARM": (661, 1164),
        "XR_HAND": (1484, 4059),
        "XR_HUMERUS": (599, 673),
        "XR_SHOULDER": (4168, 4211),
        "XR_WRIST": (3987, 5765),
    },
    "valid": {
        "XR_ELBOW": (230, 235),
        "XR_FINGER": (247, 214),
        "XR_FOREARM": (151, 150),
        "XR_HAND": (189, 271),
        "XR_HUMERUS": (140, 148),
        "XR_SHOULDER": (278, 285),
        "XR_WRIST": (295, 364),
    },
}
POSITIVE_RATE = {
    split: {part: abnormal / (abnormal + normal) for part, (abnormal, normal) in parts.items()}
    for split, parts in _COUNTS.items()
}

LABEL_SUFFIX = {1: "positive", 0: "negative"}


def image_paths_csv(split: str) -> str:
    return f"{split}_image_paths.csv"


def labeled_studies_csv(split: str) -> str:
    return f"{split}_labeled_studies.csv"


# A path below the dataset folder: train/XR_WRIST/patient11185/study1_positive/image1.png
_STUDY = r"(?P<split>[^/]+)/(?P<part>[^/]+)/(?P<patient>patient\d+)/(?P<study>study\d+)_(?P<suffix>positive|negative)"
STUDY_PATH = re.compile(_STUDY + r"/?")
IMAGE_PATH = re.compile(_STUDY + r"/image(?P<index>\d+)\.(?:png|jpe?g)", re.IGNORECASE)


@dataclass(frozen=True)
class StudyKey:
    """Names one study; `study_id` is unique across body parts and splits."""

    split: str
    body_part: str
    patient_id: str
    study: str
    folder_label: int

    @property
    def study_id(self) -> str:
        return f"{self.body_part}/{self.patient_id}/{self.study}"

    @property
    def folder(self) -> str:
        """The study folder relative to the dataset folder, as the CSVs spell it (without prefix)."""
        return f"{self.split}/{self.body_part}/{self.patient_id}/{self.study}_{LABEL_SUFFIX[self.folder_label]}"


def parse_study(match: re.Match[str]) -> StudyKey:
    return StudyKey(
        split=match["split"],
        body_part=match["part"],
        patient_id=match["patient"],
        study=match["study"],
        folder_label=1 if match["suffix"] == "positive" else 0,
    )


def write_csvs(dataset_dir: Path, studies: Sequence[tuple[StudyKey, int]], append: bool = False) -> None:
    """The four CSVs as MURA publishes them for (study, image count) pairs with images image1.png to imageN.png: no
    header, the `MURA-v1.1/` prefix, a trailing slash on study paths. `append` adds rows to CSVs already there."""
    mode = "a" if append else "w"
    for split in SOURCE_SPLITS:
        chosen = [(key, images) for key, images in studies if key.split == split]
        with (dataset_dir / image_paths_csv(split)).open(mode, newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            paths = (f"{DATASET_DIR}/{key.folder}/image{i}.png" for key, images in chosen for i in range(1, images + 1))
            writer.writerows([path] for path in paths)
        with (dataset_dir / labeled_studies_csv(split)).open(mode, newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerows((f"{DATASET_DIR}/{key.folder}/", key.folder_label) for key, _ in chosen)


def body_part_of_paths(paths: list[str]) -> str | None:
    """The body part a study's image paths name by MURA's layout (a folder `XR_WRIST`, ...), None when none does;
    a ValueError when they name several, since one study is of one body part."""
    named = {part for path in paths for part in re.split(r"[/\\]", path) if part in BODY_PARTS}
    if len(named) > 1:
        raise ValueError(f"the images' paths name several body parts ({', '.join(sorted(named))})")
    return named.pop() if named else None
