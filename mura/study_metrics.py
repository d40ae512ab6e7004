"""MURA's official protocol: a study is abnormal when the mean of its images' probabilities is above the threshold,
and models are compared by study-level Cohen's kappa per body part and overall (with AUROC beside it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
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


def kappas_from_counts(tp: np.ndarray, tn: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Cohen's kappa of many binary confusion matrices at once (counts may be weighted; none may be empty); 0 where
    chance explains everything."""
    n = tp + tn + fp + fn
    observed = (tp + tn) / n
    expected = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / (n * n)
    chance = expected >= 1.0
    return np.where(chance, 0.0, (observed - expected) / np.where(chance, 1.0, 1.0 - expected))


def kappa_from_counts(tp: float, tn: float, fp: float, fn: float) -> float:
    """Cohen's kappa of a binary confusion matrix (counts may be weighted); 0 when chance explains everything."""
    if tp + tn + fp + fn <= 0:
        raise ValueError("kappa of no studies is undefined")
    return float(kappas_from_counts(*(np.float64(count) for count in (tp, tn, fp, fn))))


def cohen_kappa(labels: Iterable[int], predictions: Iterable[int]) -> float:
    """Agreement beyond chance between two binary raters; 0 when both always say the same single class."""
    y, p = np.asarray(list(labels), dtype=bool), np.asarray(list(predictions), dtype=bool)
    return kappa_from_counts(
        tp=float(np.sum(y & p)), tn=float(np.sum(~y & ~p)), fp=float(np.sum(~y & p)), fn=float(np.sum(y & ~p))
    )


def weighted_aurocs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of the same studies under many weightings at once, one row of `weights` each (for a resample: how
    often it drew each study): the chance that an abnormal study outscores a normal one, ties counting half, as
    sklearn's `roc_auc_score(labels, scores, sample_weight=row)`. NaN for a row that weighs only one class.

    One sort of the studies serves every row, so a thousand resamples cost a few array passes, not a thousand
    calls to sklearn."""
    order = np.argsort(scores, kind="stable")
    ranked, abnormal = scores[order], labels[order].astype(bool)
    weights = np.atleast_2d(weights)[:, order].astype(float)
    positive, negative = np.where(abnormal, weights, 0.0), np.where(abnormal, 0.0, weights)
    # below[:, i]: the weight of normal studies ranked before study i; equal scores share one block of ranks.
    below = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(negative, axis=1)], axis=1)
    _, first, ties = np.unique(ranked, return_index=True, return_counts=True)
    start = np.repeat(first, ties)
    lower, tied = below[:, start], below[:, start + np.repeat(ties, ties)] - below[:, start]
    wins = np.sum(positive * (lower + 0.5 * tied), axis=1)
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    return np.divide(wins, pairs, out=np.full(len(weights), np.nan), where=pairs > 0)


CONFIDENCE = 0.95
_RESAMPLES_AT_ONCE = 500  # bounds memory: a block holds resamples x studies numbers a few times over


def _percentile_interval(values: np.ndarray) -> tuple[float, float] | None:
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    studies: list[StudyPrediction], samples: int, rng: np.random.Generator
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """95 % percentile intervals of (kappa, AUROC) over `samples` resamples of the studies, drawn with replacement.

    The study is the unit resampled, as MURA scores studies. A resample that draws only normal or only abnormal
    studies has no AUROC: it is left out of AUROC's interval (its kappa, 0 like any one-class table's, counts);
    when no resample has both classes there is no AUROC interval. No studies or no samples: no intervals."""
    if not studies or samples <= 0:
        return None, None
    labels = np.array([s.label for s in studies], dtype=bool)
    verdicts = np.array([s.abnormal for s in studies], dtype=bool)
    scores = np.array([s.probability for s in studies], dtype=float)
    cells = [labels & verdicts, ~labels & ~verdicts, ~labels & verdicts, labels & ~verdicts]  # tp, tn, fp, fn
    n = len(studies)
    kappas, aurocs = [], []
    for block in range(0, samples, _RESAMPLES_AT_ONCE):
        size = min(_RESAMPLES_AT_ONCE, samples - block)
        drawn = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(float)
        kappas.append(kappas_from_counts(*(counts @ cell for cell in cells)))
        aurocs.append(weighted_aurocs(labels, scores, counts))
    return _percentile_interval(np.concatenate(kappas)), _percentile_interval(np.concatenate(aurocs))


@dataclass(frozen=True)
class StudyMetrics:
    group: str  # a body part or "overall"
    studies: int
    kappa: float
    kappa_low: float | None  # the 95 % bootstrap interval; None when intervals are off
    kappa_high: float | None
    auroc: float | None  # None when the group has only one class
    auroc_low: float | None  # None when AUROC is, or intervals are off
    auroc_high: float | None
    radiologist_kappa: float | None
    paper_kappa: float | None


def interval_text(low_key: str, high_key: str) -> Callable[[dict], str | None]:
    """A table cell of a row's interval, "[0.612, 0.745]" (brackets, since a kappa's lower bound may be negative)."""

    def cell(row: dict) -> str | None:
        low, high = row.get(low_key), row.get(high_key)
        return None if low is None or high is None else f"[{low:.3f}, {high:.3f}]"

    return cell


# The table's columns, (title, StudyMetrics field or a function of the row), as the CLI and the report show them.
STUDY_COLUMNS = (
    ("", "group"),
    ("studies", "studies"),
    ("kappa", "kappa"),
    ("kappa 95 % CI", interval_text("kappa_low", "kappa_high")),
    ("AUROC", "auroc"),
    ("AUROC 95 % CI", interval_text("auroc_low", "auroc_high")),
    ("best radiologist", "radiologist_kappa"),
    ("MURA paper", "paper_kappa"),
)


def study_table(studies: list[StudyPrediction], bootstrap_samples: int = 0, seed: int = 0) -> list[StudyMetrics]:
    """The MURA paper's table: kappa per body part and overall, with AUROC and the paper's values beside it, and
    with `bootstrap_samples` > 0 the 95 % interval of each. Each group draws from its own generator, seeded by
    `seed` and its name, so a group's interval does not depend on which other groups the table holds."""
    groups = sorted({s.body_part for s in studies})
    rows = []
    for group in [*groups, "overall"]:
        members = [s for s in studies if group in ("overall", s.body_part)]
        labels = [s.label for s in members]
        auroc = roc_auc_score(labels, [s.probability for s in members]) if len(set(labels)) == 2 else None
        rng = np.random.default_rng([seed, *group.encode()])
        kappa_interval, auroc_interval = bootstrap_intervals(members, bootstrap_samples, rng)
        kappa_low, kappa_high = kappa_interval or (None, None)
        auroc_low, auroc_high = auroc_interval or (None, None)  # one class in the group: in every resample too
        radiologist, paper = PAPER_KAPPA.get(group, (None, None))
        rows.append(
            StudyMetrics(
                group=group,
                studies=len(members),
                kappa=cohen_kappa(labels, [s.abnormal for s in members]),
                kappa_low=kappa_low,
                kappa_high=kappa_high,
                auroc=None if auroc is None else float(auroc),
                auroc_low=auroc_low,
                auroc_high=auroc_high,
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
