"""MURA's official protocol: a study is abnormal when the mean of its images' probabilities is above the threshold,
and models are compared by study-level Cohen's kappa per body part and overall (with AUROC beside it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

# Study-level Cohen's kappa from the MURA paper (Rajpurkar et al., table 1): best radiologist and the paper's model.
PAPER_KAPPA = {
    "XR_ELBOW": (0.850, 0.710),
    "XR_FINGER": (0.410, 0.389),
    "XR_FOREARM": (0.802, 0.737),
    "XR_HAND": (0.927, 0.851),
    "XR_HUMERUS": (0.933, 0.600),
    "XR_SHOULDER": (0.864, 0.729),
    "XR_WRIST": (0.931, 0.931),
    "overall": (0.778, 0.705),
}


@dataclass(frozen=True)
class ImagePrediction:
    study_id: str
    body_part: str
    label: int
    probability: float
    study_path: str = ""  # as MURA's CSVs spell it: MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/
    source_path: str = ""  # the image's own path, relative to the data root
    uncalibrated_probability: float | None = None  # the network's own, before the model's calibration
    threshold: float | None = None  # the operating point the model judged the image at (its body part's)


@dataclass(frozen=True)
class StudyPrediction:
    study_id: str
    body_part: str
    label: int
    probability: float  # mean over the study's images
    abnormal: int
    study_path: str = ""


def study_verdict(probabilities: Iterable[float], threshold: float) -> tuple[float, int]:
    """MURA's rule: a study's probability is the mean of its images'; abnormal (1) when above the threshold."""
    probability = float(np.mean(list(probabilities)))
    return probability, int(probability > threshold)


def aggregate_studies(
    images: Iterable[ImagePrediction], threshold: float | Mapping[str, float]
) -> list[StudyPrediction]:
    """One prediction per study, at one threshold or at its body part's (`threshold`: body part -> threshold);
    fails on a study whose images disagree on its label or body part."""
    grouped: dict[str, list[ImagePrediction]] = defaultdict(list)
    for image in images:
        grouped[image.study_id].append(image)
    studies = []
    for study_id, members in sorted(grouped.items()):
        if len({(m.label, m.body_part) for m in members}) != 1:
            raise ValueError(f"study {study_id} has images with different labels or body parts")
        at = threshold if isinstance(threshold, float | int) else threshold[members[0].body_part]
        probability, abnormal = study_verdict([m.probability for m in members], at)
        studies.append(
            StudyPrediction(
                study_id, members[0].body_part, members[0].label, probability, abnormal, members[0].study_path
            )
        )
    return studies


def kappa_from_counts(tp: float, tn: float, fp: float, fn: float) -> float:
    """Cohen's kappa of a binary confusion matrix (counts may be weighted); 0 when chance explains everything."""
    n = tp + tn + fp + fn
    if n <= 0:
        raise ValueError("kappa of no studies is undefined")
    observed = (tp + tn) / n
    expected = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / (n * n)
    return 0.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def cohen_kappa(labels: Iterable[int], predictions: Iterable[int]) -> float:
    """Agreement beyond chance between two binary raters; 0 when both always say the same single class."""
    y, p = np.asarray(list(labels), dtype=bool), np.asarray(list(predictions), dtype=bool)
    return kappa_from_counts(
        tp=float(np.sum(y & p)), tn=float(np.sum(~y & ~p)), fp=float(np.sum(~y & p)), fn=float(np.sum(y & ~p))
    )


@dataclass(frozen=True)
class StudyMetrics:
    group: str  # a body part or "overall"
    studies: int
    kappa: float
    auroc: float | None  # None when the group has only one class
    radiologist_kappa: float | None
    paper_kappa: float | None


# The table's columns, (title, StudyMetrics field), as the CLI, the report and the CSV show them.
STUDY_COLUMNS = (
    ("", "group"),
    ("studies", "studies"),
    ("kappa", "kappa"),
    ("AUROC", "auroc"),
    ("best radiologist", "radiologist_kappa"),
    ("MURA paper", "paper_kappa"),
)


def study_table(studies: list[StudyPrediction]) -> list[StudyMetrics]:
    """The MURA paper's table: kappa per body part and overall, with AUROC and the paper's values beside it."""
    groups = sorted({s.body_part for s in studies})
    rows = []
    for group in [*groups, "overall"]:
        members = [s for s in studies if group in ("overall", s.body_part)]
        labels = [s.label for s in members]
        auroc = roc_auc_score(labels, [s.probability for s in members]) if len(set(labels)) == 2 else None
        radiologist, paper = PAPER_KAPPA.get(group, (None, None))
        rows.append(
            StudyMetrics(
                group=group,
                studies=len(members),
                kappa=cohen_kappa(labels, [s.abnormal for s in members]),
                auroc=None if auroc is None else float(auroc),
                radiologist_kappa=radiologist,
                paper_kappa=paper,
            )
        )
    return rows


def study_path(image_source_path: str) -> str:
    """The study folder of an image path, with the trailing slash of MURA's labeled-studies CSVs."""
    return image_source_path.rsplit("/", 1)[0] + "/"


def official_rows(studies: list[StudyPrediction]) -> list[tuple[str, int]]:
    """The official scoring script's input: header-less `Study,Model` rows, the verdict as 0/1."""
    return [(s.study_path, s.abnormal) for s in studies]
