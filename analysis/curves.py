"""Image-level curves of one slice (a body part or overall): ROC, calibration and the confusion matrix at the
model's global threshold, as plain numbers that figures draw and tests check."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mura.calibration import CalibrationBin


@dataclass(frozen=True)
class Counts:
    tp: float = 0.0
    fp: float = 0.0
    tn: float = 0.0
    fn: float = 0.0


@dataclass(frozen=True)
class SliceCurves:
    group: str  # a body part or "overall"
    fpr: list[float]  # ROC points, from (0, 0) to (1, 1)
    tpr: list[float]
    calibration: list[CalibrationBin]
    counts: Counts  # at `threshold`
    threshold: float  # TFMA's nearest (to 0.001) to the model's global threshold


def roc_points(matrices: Iterable[Counts]) -> tuple[list[float], list[float]]:
    """(FPR, TPR) from confusion matrices at many thresholds, ordered from the strictest to the most lenient.

    By hand: sklearn's roc_curve wants raw scores, and TFMA's plot gives counts at its fixed thresholds."""
    points = {(0.0, 0.0), (1.0, 1.0)}
    for c in matrices:
        negatives, positives = c.fp + c.tn, c.tp + c.fn
        if negatives and positives:
            points.add((c.fp / negatives, c.tp / positives))
    ordered = sorted(points)
    return [p[0] for p in ordered], [p[1] for p in ordered]
