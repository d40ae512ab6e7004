"""The threshold above which a study is called abnormal, per body part: chosen on the eval split's studies by a rule.

MURA's body parts differ widely in prevalence and difficulty, so one threshold for all of them serves none well.
Each part's threshold is chosen on the calibrated study probabilities of its own eval studies (a study's probability
is the mean of its images', as MURA scores it), and one global threshold on all of them:

- "kappa": the threshold of highest study-level Cohen's kappa (MURA's measure);
- "youden": the threshold of highest Youden's J (sensitivity + specificity - 1);
- "sensitivity": the highest threshold whose sensitivity reaches the target (the most specific one that does);
- "fixed": the `threshold` setting everywhere, nothing chosen.

Only thresholds halfway between two neighbouring study probabilities (or beyond the lowest or highest) are
considered: each gives a different set of verdicts, and none sits on a score where rounding could flip a verdict.
Ties (equal kappa or J): the threshold nearest the `threshold` setting, then the lower one. A body part with fewer
eval studies than the minimum, or with studies of one class only, takes the global threshold, and the reason is
recorded; the global one falls back to the `threshold` setting the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from mura.config import OPERATING_POINT_RULES as RULES
from mura.study_metrics import StudyPrediction, kappa_from_counts

GLOBAL = "global"
_TIE = 1e-12


@dataclass(frozen=True)
class OperatingPoint:
    group: str  # a body part, or "global"
    threshold: float
    studies: int  # eval studies of the group
    abnormal_studies: int
    value: float | None  # the rule's measure (kappa, J or sensitivity) at the threshold on those studies
    fell_back: str = ""  # why the group takes the global threshold (or the setting); empty when chosen on its own


@dataclass(frozen=True)
class OperatingPoints:
    rule: str
    target_sensitivity: float
    min_studies: int
    overall: OperatingPoint  # the global threshold: for images and studies whose body part is not given or known
    parts: tuple[OperatingPoint, ...]

    def thresholds(self) -> dict[str, float]:
        return {point.group: point.threshold for point in self.parts}


def candidates(labels: Sequence[int], probabilities: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, sensitivity, false positive rate) of every distinct verdict set, strictest first: "abnormal
    when above the threshold", each threshold halfway between neighbouring scores."""
    fpr, tpr, cuts = roc_curve(labels, probabilities, drop_intermediate=False)  # abnormal when >= cut; cuts[0] = inf
    scores = cuts[1:]
    below = np.append(scores[1:], 0.0)  # the next lower score; 0 below the lowest
    highest = (scores[0] + 1.0) / 2.0  # nothing abnormal
    return np.concatenate([[highest], (scores + below) / 2.0]), tpr, fpr


def _best(values: np.ndarray, thresholds: np.ndarray, prefer: float) -> int:
    tied = np.flatnonzero(values >= values.max() - _TIE)
    return int(min(tied, key=lambda i: (abs(thresholds[i] - prefer), thresholds[i])))


def choose_threshold(
    labels: Sequence[int], probabilities: Sequence[float], rule: str, target_sensitivity: float, prefer: float
) -> tuple[float, float]:
    """(threshold, the rule's measure there) on studies of both classes; `prefer`: the tie-break's anchor."""
    thresholds, tpr, fpr = candidates(labels, probabilities)
    positives = float(np.sum(labels))
    negatives = len(labels) - positives
    if rule == "kappa":
        tp, fp = tpr * positives, fpr * negatives
        values = np.array([kappa_from_counts(a, negatives - b, b, positives - a) for a, b in zip(tp, fp, strict=True)])
    elif rule == "youden":
        values = tpr - fpr
    elif rule == "sensitivity":
        index = int(np.flatnonzero(tpr >= target_sensitivity - _TIE)[0])  # the last candidate has sensitivity 1
        return float(thresholds[index]), float(tpr[index])
    else:
        raise ValueError(f"no threshold is chosen by rule {rule!r}; one of {', '.join(RULES)}")
    index = _best(values, thresholds, prefer)
    return float(thresholds[index]), float(values[index])


def _why_not(studies: Sequence[StudyPrediction], min_studies: int) -> str:
    abnormal = sum(s.label for s in studies)
    if len(studies) < min_studies:
        return f"{len(studies)} eval studies, fewer than min_operating_point_studies ({min_studies})"
    if abnormal in (0, len(studies)):
        return f"its {len(studies)} eval studies are all {'abnormal' if abnormal else 'normal'}"
    return ""


def choose_operating_points(
    studies: Sequence[StudyPrediction],
    body_parts: Sequence[str],
    rule: str,
    fixed_threshold: float,
    target_sensitivity: float = 0.9,
    min_studies: int = 10,
) -> OperatingPoints:
    """The global threshold and one per body part (`body_parts`: every part the model may be asked about)."""
    if rule not in RULES:
        raise ValueError(f"unknown operating point rule {rule!r}; one of {', '.join(RULES)}")

    def point(group: str, members: Sequence[StudyPrediction], fallback: float, minimum: int) -> OperatingPoint:
        abnormal = sum(s.label for s in members)
        if rule == "fixed":
            return OperatingPoint(group, fixed_threshold, len(members), abnormal, None)
        reason = _why_not(members, minimum)
        if reason:
            return OperatingPoint(group, fallback, len(members), abnormal, None, reason)
        labels, probabilities = [s.label for s in members], [s.probability for s in members]
        threshold, value = choose_threshold(labels, probabilities, rule, target_sensitivity, fixed_threshold)
        return OperatingPoint(group, threshold, len(members), abnormal, value)

    overall = point(GLOBAL, studies, fixed_threshold, 1)
    parts = tuple(
        point(part, [s for s in studies if s.body_part == part], overall.threshold, min_studies) for part in body_parts
    )
    return OperatingPoints(rule, target_sensitivity, min_studies, overall, parts)
