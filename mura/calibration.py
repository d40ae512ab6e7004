"""Calibrating the model's probability to the true frequency of abnormal images, and measuring how far off it is.

Training with balanced class weights shifts the sigmoid away from the frequency it should estimate. After training,
one monotonic map `sigmoid(slope * logit + intercept)` is fitted on the eval split's logits by unweighted log loss:
temperature scaling (`slope = 1 / T`, no intercept) or Platt scaling (slope and intercept). Both keep the slope
positive, so the ranking of images (and every AUC) is unchanged; only the probabilities move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.model_selection import StratifiedGroupKFold

from mura.config import CALIBRATION_METHODS as METHODS
from mura.config import CALIBRATION_SETTINGS as SETTINGS

BINS = 10  # equal-width bins of the reliability diagram and the expected calibration error
FOLDS = 5  # cross-validation folds when "auto" chooses, fewer when a class has fewer studies
_SLOPE_BOUNDS = (1e-3, 1e3)  # positive: the map stays monotonic; finite even when the eval split is separable


@dataclass(frozen=True)
class Calibration:
    """`sigmoid(slope * logit + intercept)`; the identity for "none"."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def temperature(self) -> float | None:
        return 1.0 / self.slope if self.method == "temperature" else None

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return expit(self.slope * np.asarray(logits, dtype=float) + self.intercept)


def _fit(logits: np.ndarray, labels: np.ndarray, with_intercept: bool) -> tuple[float, float]:
    """Slope (and intercept) minimising the mean log loss; its gradient is exact, so L-BFGS-B converges in a few
    steps even on thousands of images."""
    z, y = np.asarray(logits, dtype=float), np.asarray(labels, dtype=float)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        slope, intercept = params[0], params[1] if with_intercept else 0.0
        s = slope * z + intercept
        residual = expit(s) - y
        gradient = [np.mean(residual * z)] + ([np.mean(residual)] if with_intercept else [])
        return float(np.mean(np.logaddexp(0.0, s) - y * s)), np.array(gradient)

    start = np.array([1.0, 0.0] if with_intercept else [1.0])
    bounds = [_SLOPE_BOUNDS, (None, None)] if with_intercept else [_SLOPE_BOUNDS]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return float(result.x[0]), float(result.x[1]) if with_intercept else 0.0


def fit(method: str, logits: np.ndarray, labels: np.ndarray) -> Calibration:
    if method == "temperature":
        slope, _ = _fit(logits, labels, with_intercept=False)
        return Calibration("temperature", slope)
    if method == "platt":
        return Calibration("platt", *_fit(logits, labels, with_intercept=True))
    if method == "none":
        return Calibration("none")
    raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(METHODS)}")


def log_loss(labels: Sequence[int], probabilities: Sequence[float]) -> float:
    """Unweighted: the calibrated probability must match the frequency of abnormal images, not the class weights."""
    return float(sklearn_log_loss(labels, probabilities, labels=[0, 1]))


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    images: float
    mean_prediction: float | None  # None for an empty bin
    fraction_abnormal: float | None


def rebin_calibration(buckets: Iterable[tuple[float, float, float, float]], bins: int = BINS) -> list[CalibrationBin]:
    """(lower bound, images, sum of labels, sum of predictions) buckets -> `bins` equal-width bins on [0, 1].

    By hand: sklearn's calibration_curve wants raw scores (TFMA gives bucket sums) and returns no per-bin counts."""
    totals = [[0.0, 0.0, 0.0] for _ in range(bins)]
    for lower, images, labels, predictions in buckets:
        index = 0 if math.isinf(lower) else min(int(max(lower, 0.0) * bins), bins - 1)
        totals[index][0] += images
        totals[index][1] += labels
        totals[index][2] += predictions
    return [
        CalibrationBin(
            lower=i / bins,
            upper=(i + 1) / bins,
            images=images,
            mean_prediction=predictions / images if images else None,
            fraction_abnormal=labels / images if images else None,
        )
        for i, (images, labels, predictions) in enumerate(totals)
    ]


def reliability_bins(labels: Sequence[int], probabilities: Sequence[float], bins: int = BINS) -> list[CalibrationBin]:
    """The reliability diagram of raw scores: each image is a bucket of one."""
    buckets = ((float(p), 1.0, float(y), float(p)) for y, p in zip(labels, probabilities, strict=True))
    return rebin_calibration(buckets, bins)


def expected_calibration_error(labels: Sequence[int], probabilities: Sequence[float], bins: int = BINS) -> float:
    """The images' share of each equal-width bin times the gap between its mean probability and its fraction of
    abnormal images, summed: 0 for perfectly calibrated scores."""
    filled = [b for b in reliability_bins(labels, probabilities, bins) if b.images]
    total = sum(b.images for b in filled)
    return float(sum(b.images * abs(b.mean_prediction - b.fraction_abnormal) for b in filled) / total)


@dataclass(frozen=True)
class Measured:
    """How well a set of probabilities is calibrated."""

    log_loss: float
    ece: float
    bins: list[CalibrationBin]


def measure(labels: Sequence[int], probabilities: Sequence[float]) -> Measured:
    return Measured(
        log_loss(labels, probabilities),
        expected_calibration_error(labels, probabilities),
        reliability_bins(labels, probabilities),
    )


def cross_validated_log_loss(method: str, logits: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> float:
    """Log loss of out-of-fold probabilities, folds split by study (a study's images are alike) and stratified.

    In-sample, Platt scaling wins by construction (it has temperature's slope and an intercept besides); out of
    fold, its second parameter must earn its place. Needs at least 2 studies of each class."""
    z, y, g = np.asarray(logits, dtype=float), np.asarray(labels, dtype=int), np.asarray(groups)
    folds = min(FOLDS, *(len(set(g[y == label])) for label in (0, 1)))
    predicted = np.empty(len(z))
    for train, held_out in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0).split(z, y, g):
        predicted[held_out] = fit(method, z[train], y[train]).apply(z[held_out])
    return log_loss(y, predicted)


@dataclass(frozen=True)
class CalibrationReport:
    """The calibration the model exports, why, and what it does on the eval split."""

    setting: str  # train.calibration
    chosen: Calibration
    eval_images: int
    before: Measured
    after: Measured
    cross_validated_log_loss: dict[str, float] = field(default_factory=dict)  # by method, when "auto" chose
    reason: str = ""  # why no calibration was fitted, when none could be


def calibrate(setting: str, logits: Sequence[float], labels: Sequence[int], groups: Sequence[str]) -> CalibrationReport:
    """Fits `setting` (or, for "auto", the method of lowest cross-validated log loss, "none" included, so a model
    already calibrated is left alone) on the eval split's logits. `groups`: each image's study."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown calibration setting {setting!r}; one of {', '.join(SETTINGS)}")
    z, y = np.asarray(logits, dtype=float), np.asarray(labels, dtype=int)
    before = measure(y, expit(z))
    studies = {label: len({g for g, lab in zip(groups, y, strict=True) if lab == label}) for label in (0, 1)}
    reason, scores = "", {}
    if setting != "none" and min(studies.values()) < 2:
        reason = f"the eval split has {studies[0]} normal and {studies[1]} abnormal studies; fitting needs 2 of each"
        chosen = Calibration("none")
    elif setting == "auto":
        scores = {method: cross_validated_log_loss(method, z, y, groups) for method in METHODS}
        chosen = fit(min(METHODS, key=lambda method: scores[method]), z, y)  # ties: METHODS' order
    else:
        chosen = fit(setting, z, y)
    after = measure(y, chosen.apply(z))
    return CalibrationReport(setting, chosen, len(y), before, after, scores, reason)
