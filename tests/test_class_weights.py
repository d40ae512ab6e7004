import pytest

from mura.class_weights import class_weights, parse_label_counts

COUNTS = {("XR_HAND", 1): 10, ("XR_HAND", 0): 30, ("XR_WRIST", 1): 20, ("XR_WRIST", 0): 20}


def test_balanced_is_sklearn_balanced_over_labels() -> None:
    # 80 images, 30 abnormal, 50 normal: n / (2 * count)
    weights = class_weights(COUNTS, "balanced")
    assert weights[("XR_HAND", 1)] == pytest.approx(80 / 60)
    assert weights[("XR_WRIST", 1)] == pytest.approx(80 / 60)
    assert weights[("XR_HAND", 0)] == pytest.approx(80 / 100)
    assert weights[("XR_WRIST", 0)] == pytest.approx(80 / 100)


def test_per_body_part_is_the_mura_papers() -> None:
    # hand: A=10, N=30 -> w1 = 30/40, w0 = 10/40; wrist: A=N=20 -> 0.5 each
    weights = class_weights(COUNTS, "per_body_part")
    assert weights == pytest.approx(
        {("XR_HAND", 1): 0.75, ("XR_HAND", 0): 0.25, ("XR_WRIST", 1): 0.5, ("XR_WRIST", 0): 0.5}
    )


def test_weighted_classes_carry_equal_total_weight_in_balanced_mode() -> None:
    weights = class_weights(COUNTS, "balanced")
    abnormal = sum(n * weights[key] for key, n in COUNTS.items() if key[1] == 1)
    normal = sum(n * weights[key] for key, n in COUNTS.items() if key[1] == 0)
    assert abnormal == pytest.approx(normal)


def test_transform_vocabulary_lines_are_parsed() -> None:
    lines = ["30 XR_HAND:0", "10 XR_HAND:1", "", "20 XR_WRIST:1", "20 XR_WRIST:0"]
    assert parse_label_counts(lines) == COUNTS


def test_one_label_only_or_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="both labels"):
        class_weights({("XR_HAND", 0): 5}, "balanced")
    with pytest.raises(ValueError, match="balanced"):
        class_weights(COUNTS, "inverse")
