"""Operating points on hand-made study scores whose kappa, Youden and sensitivity thresholds are worked out here."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from mura.layout import BODY_PARTS
from mura.operating_points import GLOBAL, choose_operating_points, choose_threshold
from mura.study_metrics import StudyPrediction

# Balanced: sorted, .10 N .20 N .30 N .40 A .45 N .55 A .60 N .70 A .80 A .90 A. Kappa is 0.6 at three thresholds:
# 0.35 (TP 5, FP 2), 0.50 (TP 4, FP 1) and 0.65 (TP 3, FP 0); 0.4 at the others.
BALANCED = [(0, 0.10), (0, 0.20), (0, 0.30), (1, 0.40), (0, 0.45), (1, 0.55), (0, 0.60), (1, 0.70), (1, 0.80)]
BALANCED.append((1, 0.90))
# Two abnormal studies in ten: .1 .2 .3 .4 .5 .6 N, .65 A, .7 .8 N, .9 A. Kappa is highest at 0.85 (TP 1, FP 0:
# 0.615); Youden's J at 0.625 (TP 2, FP 2: 1 - 0.25 = 0.75).
RARE = [(0, 0.1), (0, 0.2), (0, 0.3), (0, 0.4), (0, 0.5), (0, 0.6), (1, 0.65), (0, 0.7), (0, 0.8), (1, 0.9)]


def split(studies):
    return [label for label, _ in studies], [p for _, p in studies]


def test_kappa_ties_go_to_the_threshold_nearest_the_setting_then_the_lower() -> None:
    labels, scores = split(BALANCED)
    assert choose_threshold(labels, scores, "kappa", 0.9, prefer=0.5) == pytest.approx((0.50, 0.6))
    assert choose_threshold(labels, scores, "kappa", 0.9, prefer=0.3) == pytest.approx((0.35, 0.6))
    assert choose_threshold(labels, scores, "kappa", 0.9, prefer=0.95) == pytest.approx((0.65, 0.6))
    assert choose_threshold(labels, scores, "kappa", 0.9, prefer=0.0) == pytest.approx((0.35, 0.6))


def test_kappa_and_youden_part_ways_when_abnormal_studies_are_rare() -> None:
    labels, scores = split(RARE)
    threshold, kappa = choose_threshold(labels, scores, "kappa", 0.9, prefer=0.5)
    assert threshold == pytest.approx(0.85)
    assert (
        kappa
        == pytest.approx(cohen_kappa_score(labels, [int(p > threshold) for p in scores]))
        == pytest.approx(0.16 / 0.26)
    )
    assert choose_threshold(labels, scores, "youden", 0.9, prefer=0.5) == pytest.approx((0.625, 0.75))


def test_the_sensitivity_rule_takes_the_highest_threshold_that_reaches_the_target() -> None:
    labels, scores = split(RARE)
    assert choose_threshold(labels, scores, "sensitivity", 0.9, prefer=0.5) == pytest.approx((0.625, 1.0))
    assert choose_threshold(labels, scores, "sensitivity", 0.5, prefer=0.5) == pytest.approx((0.85, 0.5))
    labels, scores = split(BALANCED)
    assert choose_threshold(labels, scores, "sensitivity", 0.8, prefer=0.5) == pytest.approx((0.50, 0.8))
    assert choose_threshold(labels, scores, "sensitivity", 1.0, prefer=0.5) == pytest.approx((0.35, 1.0))


def test_the_chosen_kappa_is_the_best_of_every_threshold_tried_by_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 30)
        labels[:2] = [0, 1]
        scores = np.round(rng.uniform(0, 1, 30), 2)  # ties among scores too
        threshold, kappa = choose_threshold(labels, scores, "kappa", 0.9, prefer=0.5)
        assert kappa == pytest.approx(cohen_kappa_score(labels, (scores > threshold).astype(int)))
        grid = np.linspace(0.0, 1.0, 1001)
        best = max(cohen_kappa_score(labels, (scores > t).astype(int)) for t in grid if 0 < (scores > t).sum() < 30)
        assert kappa == pytest.approx(best)
        assert not np.isclose(scores, threshold).any()  # never on a score


def study(part: str, n: int, label: int, p: float) -> StudyPrediction:
    return StudyPrediction(f"{part}/s{n}", part, label, p, int(p > 0.5))


def test_each_body_part_gets_its_own_threshold_or_the_global_one_and_why() -> None:
    hand = [study("XR_HAND", n, label, p) for n, (label, p) in enumerate(BALANCED)]
    wrist = [study("XR_WRIST", 0, 1, 0.9), study("XR_WRIST", 1, 0, 0.2), study("XR_WRIST", 2, 0, 0.3)]
    elbow = [study("XR_ELBOW", n, 0, 0.1 * n) for n in range(10)]
    studies = hand + wrist + elbow
    points = choose_operating_points(studies, BODY_PARTS, "kappa", 0.5, min_studies=10)
    labels, scores = [s.label for s in studies], [s.probability for s in studies]
    assert points.overall.threshold == choose_threshold(labels, scores, "kappa", 0.9, 0.5)[0]
    assert (points.overall.studies, points.overall.abnormal_studies, points.overall.fell_back) == (23, 6, "")
    by_part = {point.group: point for point in points.parts}
    assert list(by_part) == list(BODY_PARTS)
    assert by_part["XR_HAND"].threshold == pytest.approx(0.50) and by_part["XR_HAND"].value == pytest.approx(0.6)
    assert not by_part["XR_HAND"].fell_back
    assert by_part["XR_WRIST"].threshold == points.overall.threshold
    assert "3 eval studies, fewer than min_operating_point_studies (10)" in by_part["XR_WRIST"].fell_back
    assert by_part["XR_ELBOW"].threshold == points.overall.threshold
    assert "all normal" in by_part["XR_ELBOW"].fell_back
    assert by_part["XR_FINGER"].studies == 0 and by_part["XR_FINGER"].fell_back
    assert points.thresholds() == {part: by_part[part].threshold for part in BODY_PARTS}
    # With a minimum of 3 the wrist chooses its own: 0.6, between its abnormal 0.9 and its normals.
    fewer = choose_operating_points(studies, BODY_PARTS, "kappa", 0.5, min_studies=3)
    assert fewer.thresholds()["XR_WRIST"] == pytest.approx(0.6)


def test_fixed_is_the_setting_everywhere_and_one_class_overall_falls_back_to_it() -> None:
    hand = [study("XR_HAND", n, label, p) for n, (label, p) in enumerate(BALANCED)]
    fixed = choose_operating_points(hand, BODY_PARTS, "fixed", 0.42)
    assert {p.threshold for p in (fixed.overall, *fixed.parts)} == {0.42}
    assert not any(p.fell_back for p in (fixed.overall, *fixed.parts))
    normal = [study("XR_HAND", n, 0, 0.1 * n) for n in range(12)]
    points = choose_operating_points(normal, BODY_PARTS, "youden", 0.42)
    assert points.overall.threshold == 0.42 and "all normal" in points.overall.fell_back
    assert set(points.thresholds().values()) == {0.42}
    assert points.overall.group == GLOBAL


def test_an_unknown_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="f1"):
        choose_operating_points([], BODY_PARTS, "f1", 0.5)
