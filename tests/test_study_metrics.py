import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from mura.study_gate import LOWER_BOUND, POINT, GateDecision, decide
from mura.study_metrics import (
    STUDY_COLUMNS,
    ImagePrediction,
    StudyPrediction,
    aggregate_studies,
    bootstrap_intervals,
    cohen_kappa,
    official_rows,
    study_path,
    study_table,
    weighted_aurocs,
)
from mura.tables import column_table


def image(study: str, part: str, label: int, p: float) -> ImagePrediction:
    return ImagePrediction(study, part, label, p)


IMAGES = [
    image("XR_HAND/patient1/study1", "XR_HAND", 1, 0.9),
    image("XR_HAND/patient1/study1", "XR_HAND", 1, 0.3),  # mean 0.6: abnormal
    image("XR_HAND/patient2/study1", "XR_HAND", 0, 0.2),
    image("XR_HAND/patient2/study1", "XR_HAND", 0, 0.6),  # mean 0.4: normal
    image("XR_WRIST/patient3/study1", "XR_WRIST", 1, 0.45),  # a missed abnormal study
    image("XR_WRIST/patient4/study1", "XR_WRIST", 0, 0.1),
    image("XR_WRIST/patient5/study1", "XR_WRIST", 0, 0.7),  # a false alarm
]


def test_a_study_is_the_mean_of_its_images_above_the_threshold() -> None:
    studies = {s.study_id: s for s in aggregate_studies(IMAGES, threshold=0.5)}
    assert studies["XR_HAND/patient1/study1"].probability == pytest.approx(0.6)
    assert studies["XR_HAND/patient1/study1"].abnormal == 1
    assert studies["XR_HAND/patient2/study1"].probability == pytest.approx(0.4)
    assert studies["XR_HAND/patient2/study1"].abnormal == 0
    assert [s.abnormal for s in aggregate_studies(IMAGES, threshold=0.65)][:2] == [0, 0]


def test_each_study_can_be_judged_at_its_body_parts_threshold() -> None:
    studies = {s.study_id: s for s in aggregate_studies(IMAGES, threshold={"XR_HAND": 0.35, "XR_WRIST": 0.4})}
    assert studies["XR_HAND/patient2/study1"].abnormal == 1  # 0.4 > the hand's 0.35 (not > 0.5)
    assert studies["XR_WRIST/patient3/study1"].abnormal == 1  # 0.45 > the wrist's 0.4
    assert studies["XR_WRIST/patient4/study1"].abnormal == 0


def test_images_of_one_study_must_agree_on_label() -> None:
    with pytest.raises(ValueError, match="different labels"):
        aggregate_studies([image("s", "XR_HAND", 1, 0.5), image("s", "XR_HAND", 0, 0.5)], 0.5)


def test_kappa_by_hand() -> None:
    # 5 studies, labels 1,0,1,0,0 and verdicts 1,0,0,0,1: observed 3/5; expected 0.4*0.4 + 0.6*0.6 = 0.52
    assert cohen_kappa([1, 0, 1, 0, 0], [1, 0, 0, 0, 1]) == pytest.approx((0.6 - 0.52) / (1 - 0.52))
    assert cohen_kappa([1, 1, 0], [1, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([0, 0, 0], [0, 0, 0]) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=60))
def test_kappa_matches_sklearn(pairs: list[tuple[int, int]]) -> None:
    labels, verdicts = zip(*pairs, strict=True)
    with warnings.catch_warnings():  # sklearn warns on its 0/0 case, checked below
        warnings.simplefilter("ignore")
        expected = cohen_kappa_score(labels, verdicts, labels=[0, 1])
    got = cohen_kappa(labels, verdicts)
    if np.isnan(expected):  # sklearn: 0/0 when both raters use one same class
        assert got == 0.0
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_the_study_table_by_body_part_and_overall() -> None:
    studies = aggregate_studies(IMAGES, threshold=0.5)
    rows = {row.group: row for row in study_table(studies)}
    assert list(rows) == ["XR_HAND", "XR_WRIST", "overall"]
    assert rows["XR_HAND"].kappa == pytest.approx(1.0)
    assert rows["XR_WRIST"].kappa == pytest.approx(cohen_kappa_score([1, 0, 0], [0, 0, 1]))
    overall_labels = [s.label for s in studies]
    assert rows["overall"].kappa == pytest.approx(cohen_kappa_score(overall_labels, [s.abnormal for s in studies]))
    assert rows["overall"].auroc == pytest.approx(roc_auc_score(overall_labels, [s.probability for s in studies]))
    assert rows["overall"].studies == 5
    assert (rows["XR_WRIST"].radiologist_kappa, rows["XR_WRIST"].paper_kappa) == (0.931, 0.931)
    assert (rows["overall"].radiologist_kappa, rows["overall"].paper_kappa) == (0.778, 0.705)


def test_auroc_is_none_for_a_group_with_one_class() -> None:
    studies = aggregate_studies([image("a", "XR_HAND", 0, 0.2), image("b", "XR_HAND", 0, 0.7)], 0.5)
    assert study_table(studies)[0].auroc is None


def test_official_rows_name_the_study_folder_as_mura_does() -> None:
    path = study_path("MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/image3.png")
    assert path == "MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/"
    images = [ImagePrediction("XR_WRIST/patient11185/study1", "XR_WRIST", 1, p, path) for p in (0.7, 0.9)]
    assert official_rows(aggregate_studies(images, 0.5)) == [(path, 1)]


def drawn_studies(count: int, seed: int, parts: tuple[str, ...] = ("XR_HAND", "XR_WRIST")) -> list[StudyPrediction]:
    """Studies of one known population: 40 % abnormal, a probability that leans towards the label by 0.2 with noise
    of 0.2, abnormal above 0.5 (a kappa near 0.35, an AUROC near 0.75)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.4).astype(int)
    probabilities = np.clip(0.4 + 0.2 * labels + rng.normal(0, 0.2, count), 0, 1).round(2)  # rounded: some ties
    return [
        StudyPrediction(f"s{i}", parts[i % len(parts)], int(y), float(p), int(p > 0.5))
        for i, (y, p) in enumerate(zip(labels, probabilities, strict=True))
    ]


def test_every_interval_holds_its_point_estimate_and_has_a_width() -> None:
    rows = study_table(drawn_studies(300, seed=1), bootstrap_samples=1000, seed=0)
    assert [row.group for row in rows] == ["XR_HAND", "XR_WRIST", "overall"]
    for row in rows:
        assert row.kappa_low < row.kappa < row.kappa_high, row
        assert row.auroc_low < row.auroc < row.auroc_high, row
        assert 0.05 < row.kappa_high - row.kappa_low < 0.5, row  # 150 or 300 studies: neither a point nor everything


def test_the_interval_narrows_by_about_half_on_four_times_the_studies() -> None:
    """The same population sampled 4x larger: a bootstrap interval's width goes as 1/sqrt(n)."""
    small = study_table(drawn_studies(150, seed=2), bootstrap_samples=2000)[-1]
    large = study_table(drawn_studies(600, seed=3), bootstrap_samples=2000)[-1]
    for figure in ("kappa", "auroc"):
        ratio = (getattr(large, f"{figure}_high") - getattr(large, f"{figure}_low")) / (
            getattr(small, f"{figure}_high") - getattr(small, f"{figure}_low")
        )
        assert 0.35 < ratio < 0.7, (figure, ratio)


def test_about_95_percent_of_the_intervals_cover_the_populations_kappa_and_auroc() -> None:
    """Intervals of the wrong level (90 %, 99.9 %), resamples without replacement, or figures computed on the
    wrong studies all miss this: over 200 test sets of 120 studies each, about 95 % of the intervals hold the
    population's figures (estimated here on 200,000 studies)."""
    population = drawn_studies(200_000, seed=4, parts=("XR_HAND",))
    truth = study_table(population)[-1]
    covered = {"kappa": 0, "auroc": 0}
    trials = 200
    for trial in range(trials):
        kappa, auroc = bootstrap_intervals(drawn_studies(120, seed=100 + trial), 500, np.random.default_rng(trial))
        covered["kappa"] += kappa[0] <= truth.kappa <= kappa[1]
        covered["auroc"] += auroc[0] <= truth.auroc <= auroc[1]
    assert all(0.88 <= hits / trials <= 0.99 for hits in covered.values()), covered


@pytest.mark.parametrize(
    ("labels", "one_class_resamples"),
    [
        ([1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1], False),
        ([1, 0, 0, 0, 0, 0, 0, 0], True),  # a third of the resamples draw no abnormal study: no AUROC for them
    ],
)
def test_the_intervals_are_sklearns_figures_over_resamples_of_the_studies(
    labels: list[int], one_class_resamples: bool
) -> None:
    """The same resamples, redone with sklearn one by one: percentiles of cohen_kappa_score and roc_auc_score, a
    resample of one class left out of AUROC's (and scored 0 for kappa, the project's value where sklearn's is
    0/0)."""
    rng = np.random.default_rng(5)
    probabilities = rng.random(len(labels)).round(1)
    studies = [
        StudyPrediction(f"s{i}", "XR_HAND", y, float(p), int(p > 0.5))
        for i, (y, p) in enumerate(zip(labels, probabilities, strict=True))
    ]
    samples = 300  # one block of resamples: drawn as bootstrap_intervals draws them, a row of study indices each
    drawn = np.random.default_rng(6).integers(0, len(studies), size=(samples, len(studies)))
    kappas, aurocs = [], []
    for row in drawn:
        y = [studies[i].label for i in row]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = cohen_kappa_score(y, [studies[i].abnormal for i in row], labels=[0, 1])
        kappas.append(0.0 if np.isnan(kappa) else kappa)
        if len(set(y)) == 2:
            aurocs.append(roc_auc_score(y, [studies[i].probability for i in row]))
    assert (len(aurocs) < samples) == one_class_resamples
    kappa, auroc = bootstrap_intervals(studies, samples, np.random.default_rng(6))
    assert kappa == pytest.approx(tuple(np.percentile(kappas, [2.5, 97.5])), abs=1e-12)
    assert auroc == pytest.approx(tuple(np.percentile(aurocs, [2.5, 97.5])), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4), st.integers(0, 3)), min_size=2, max_size=40),
)
def test_the_numpy_auroc_is_sklearns_with_sample_weights(rows: list[tuple[int, int, int]]) -> None:
    """Scores from five values, so ties are common; weights 0 to 3, as a resample draws a study 0 to 3 times."""
    labels, scores, weights = (np.array(column) for column in zip(*rows, strict=True))
    got = weighted_aurocs(labels, scores / 4, np.stack([weights, np.ones_like(weights)]))
    for weighting, value in zip((weights, np.ones_like(weights)), got, strict=True):
        if len(set(labels[weighting > 0])) < 2:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(roc_auc_score(labels, scores / 4, sample_weight=weighting), abs=1e-12)


def test_the_same_seed_gives_the_same_intervals_and_a_group_its_own_draws() -> None:
    studies = drawn_studies(200, seed=7)
    first, again = study_table(studies, 500, seed=3), study_table(studies, 500, seed=3)
    assert first == again
    other = study_table(studies, 500, seed=4)
    assert [(r.kappa_low, r.auroc_high) for r in other] != [(r.kappa_low, r.auroc_high) for r in first]
    assert [r.kappa for r in other] == [r.kappa for r in first]  # the points do not depend on the draws
    hands_alone = study_table([s for s in studies if s.body_part == "XR_HAND"], 500, seed=3)[0]
    assert hands_alone == first[0]  # the wrist studies beside them change nothing


def test_no_resamples_no_intervals() -> None:
    studies = drawn_studies(60, seed=8)
    with_intervals, without = study_table(studies, 1000), study_table(studies, 0)
    for row, plain in zip(with_intervals, without, strict=True):
        assert (plain.kappa_low, plain.kappa_high, plain.auroc_low, plain.auroc_high) == (None, None, None, None)
        assert (plain.kappa, plain.auroc) == (row.kappa, row.auroc)


def test_a_group_of_one_class_has_a_kappa_interval_and_no_auroc_one() -> None:
    studies = [StudyPrediction(f"s{i}", "XR_HAND", 0, 0.1 * i, int(i > 5)) for i in range(10)]
    (row, _) = study_table(studies, 200)
    assert row.auroc is row.auroc_low is row.auroc_high is None
    assert row.kappa_low == row.kappa == row.kappa_high == 0.0  # one class in every resample: chance, 0


def test_a_table_of_real_mura_size_is_resampled_in_well_under_a_few_seconds() -> None:
    """MURA's test split: 1,199 studies over seven body parts. A loop of sklearn calls per resample takes minutes."""
    parts = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")
    studies = drawn_studies(1199, seed=9, parts=parts)
    started = time.perf_counter()
    study_table(studies, 1000)
    assert time.perf_counter() - started < 5.0


def test_the_table_shows_each_interval_as_one_cell() -> None:
    rows = [row.__dict__ for row in study_table(drawn_studies(80, seed=10), 500)]
    rows[0].update(auroc=None, auroc_low=None, auroc_high=None)
    table = column_table(rows, STUDY_COLUMNS)
    header, _, *lines = table.splitlines()
    assert "kappa 95 % CI" in header and "AUROC 95 % CI" in header
    overall = rows[-1]
    assert f"[{overall['kappa_low']:.3f}, {overall['kappa_high']:.3f}]" in lines[-1]
    assert f"[{overall['auroc_low']:.3f}, {overall['auroc_high']:.3f}]" in lines[-1]
    assert lines[0].split().count("-") == 2  # the first row's AUROC and its interval


def test_the_gate_holds_the_point_or_the_lower_bound_against_the_floor() -> None:
    table = study_table(drawn_studies(200, seed=11), 1000)
    overall = table[-1]
    floor = (overall.kappa_low + overall.kappa) / 2  # the point clears it, the lower bound does not
    on_point = decide(table, floor, on_lower_bound=False)
    on_bound = decide(table, floor, on_lower_bound=True)
    assert (on_point.blessed, on_point.figure, on_point.kappa) == (True, POINT, overall.kappa)
    assert (on_bound.blessed, on_bound.figure, on_bound.kappa) == (False, LOWER_BOUND, overall.kappa_low)
    assert decide(table, overall.kappa_low - 0.01, on_lower_bound=True).blessed
    assert not decide(table, overall.kappa, on_lower_bound=False).blessed  # strictly above the floor
    assert "lower bound of the 95 % interval" in on_bound.reason() and "is not above the floor" in on_bound.reason()
    assert on_point.reason() == f"overall study kappa {overall.kappa:.3f} > floor {floor}"


def test_the_gate_reads_back_what_it_wrote_and_old_reports_as_the_point() -> None:
    table = study_table(drawn_studies(100, seed=12), 500)
    decision = decide(table, 0.1, on_lower_bound=True)
    report = {**decision.to_report(), "rows": [row.__dict__ for row in table]}
    assert GateDecision.from_report(report) == decision
    old = {"blessed": True, "kappa_floor": 0.0, "rows": [row.__dict__ for row in table]}
    assert GateDecision.from_report(old) == GateDecision(True, POINT, table[-1].kappa, 0.0)


def test_the_lower_bound_gate_needs_intervals() -> None:
    with pytest.raises(ValueError, match="has none"):
        decide(study_table(drawn_studies(50, seed=13), 0), 0.0, on_lower_bound=True)
