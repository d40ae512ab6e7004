import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from mura.study_metrics import (
    ImagePrediction,
    aggregate_studies,
    cohen_kappa,
    official_rows,
    study_path,
    study_table,
)


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
