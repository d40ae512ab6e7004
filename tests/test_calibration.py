"""Calibration on scores whose true probabilities are known: what each method recovers, and how ECE measures it."""

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.metrics import log_loss as sklearn_log_loss

from mura.calibration import (
    Calibration,
    calibrate,
    expected_calibration_error,
    fit,
    reliability_bins,
)


def drawn(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true logits, labels drawn from them, a study id per image: 2 images a study)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < expit(true)).astype(int)
    return true, labels, np.array([f"s{i // 2}" for i in range(n)])


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    true, labels, _ = drawn(40_000)
    overconfident = true * 3.0  # a temperature of 3 undoes it
    fitted = fit("temperature", overconfident, labels)
    assert fitted.temperature == pytest.approx(3.0, rel=0.05)
    assert fitted.intercept == 0.0


def test_platt_scaling_undoes_the_shift_class_weights_leave() -> None:
    """Class weights shift the logit by a constant (and training sharpens it): Platt fits both, temperature cannot
    move the intercept, and "auto" takes Platt by its cross-validated log loss."""
    true, labels, studies = drawn(20_000, seed=1)
    miscalibrated = 2.0 * true + 1.5
    platt = fit("platt", miscalibrated, labels)
    assert (platt.slope, platt.intercept) == pytest.approx((0.5, -0.75), abs=0.05)
    report = calibrate("auto", miscalibrated, labels, studies)
    assert report.chosen.method == "platt"
    assert report.cross_validated_log_loss["platt"] < report.cross_validated_log_loss["temperature"]
    assert report.cross_validated_log_loss["temperature"] < report.cross_validated_log_loss["none"]
    assert report.after.log_loss < report.before.log_loss - 0.05
    assert report.after.ece < 0.02 < 0.1 < report.before.ece


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_lowers_the_eval_log_loss_of_a_miscalibrated_model(method: str) -> None:
    true, labels, studies = drawn(3_000, seed=2)
    miscalibrated = 2.5 * true + 1.0
    report = calibrate(method, miscalibrated, labels, studies)
    assert report.chosen.method == method and report.eval_images == 3_000
    assert report.before.log_loss == pytest.approx(sklearn_log_loss(labels, expit(miscalibrated)))
    assert report.after.log_loss == pytest.approx(sklearn_log_loss(labels, report.chosen.apply(miscalibrated)))
    assert report.after.log_loss < report.before.log_loss


def test_auto_leaves_a_calibrated_model_alone() -> None:
    """On well calibrated scores Platt's extra parameters only fit noise: out of fold, "none" is no worse."""
    true, labels, studies = drawn(400, seed=3)
    report = calibrate("auto", true, labels, studies)
    losses = report.cross_validated_log_loss
    assert report.chosen.method == min(losses, key=losses.get)
    assert losses["none"] <= losses["platt"] + 0.01
    assert Calibration("none").apply(true) == pytest.approx(expit(true))


def test_without_two_studies_of_each_class_nothing_is_fitted_and_the_reason_is_kept() -> None:
    logits = np.array([0.1, 0.4, -0.3, 2.0])
    report = calibrate("auto", logits, [0, 0, 0, 1], ["a", "b", "c", "d"])
    assert report.chosen == Calibration("none")
    assert "1 abnormal" in report.reason
    assert report.after == report.before


def test_ece_of_perfectly_calibrated_scores_is_near_zero_and_of_shifted_ones_is_the_shift() -> None:
    rng = np.random.default_rng(5)
    probabilities = rng.uniform(0.0, 1.0, 200_000)
    labels = (rng.random(probabilities.size) < probabilities).astype(int)
    assert expected_calibration_error(labels, probabilities) < 0.005
    # Every score 0.1 above the frequency (kept inside the bins): the gap in every bin is 0.1.
    shifted = np.clip(probabilities, 0.0, 0.9) + 0.1
    kept = probabilities <= 0.9
    assert expected_calibration_error(labels[kept], shifted[kept]) == pytest.approx(0.1, abs=0.005)


def test_reliability_bins_count_each_image_once_by_equal_width() -> None:
    labels = [0, 1, 1, 0, 1]
    probabilities = [0.05, 0.15, 0.19, 0.95, 1.0]
    bins = reliability_bins(labels, probabilities, bins=10)
    assert [b.images for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[1].mean_prediction == pytest.approx(0.17) and bins[1].fraction_abnormal == 1.0
    assert bins[9].fraction_abnormal == 0.5 and bins[2].mean_prediction is None
    # 1/5 * |0.05 - 0| + 2/5 * |0.17 - 1| + 2/5 * |0.975 - 0.5|
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.01 + 0.332 + 0.19)


def test_an_unknown_method_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="isotonic"):
        calibrate("isotonic", logit(np.array([0.2, 0.7])), [0, 1], ["a", "b"])
