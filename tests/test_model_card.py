"""The model card built from constructed run outputs (what it copies, what it counts, what a refused model's card
says), and the card the shared pipeline run pushed."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf

from analysis.run_outputs import find_run_outputs
from components.study_evaluator import read_study_report
from mura.layout import BODY_PARTS
from mura.model_card import (
    CARD_DIR,
    CARD_HTML,
    TfmaGate,
    build_card,
    failure_modes,
    read_card,
    to_html,
    to_json,
    with_version,
)
from mura.study_metrics import ImagePrediction
from tests.test_report import gated_study_report, plain_facts

TRAIN_COUNTS = {("XR_HAND", 0): 40, ("XR_HAND", 1): 25, ("XR_WRIST", 0): 31, ("XR_WRIST", 1): 0, ("XR_ELBOW", 1): 7}
IMAGES = [
    ImagePrediction("s1", "XR_HAND", 1, 0.10, source_path="hand/missed-worst.png", threshold=0.5),
    ImagePrediction("s1", "XR_HAND", 1, 0.40, source_path="hand/missed.png", threshold=0.5),
    ImagePrediction("s2", "XR_HAND", 1, 0.90, source_path="hand/caught.png", threshold=0.5),
    ImagePrediction("s3", "XR_HAND", 0, 0.60, source_path="hand/raised.png", threshold=0.5),
    ImagePrediction("s4", "XR_HAND", 0, 0.20, source_path="hand/right.png", threshold=0.5),
    ImagePrediction("s5", "XR_WRIST", 0, 0.20, source_path="wrist/raised.png", threshold=0.15),  # its part's threshold
    ImagePrediction("s6", "XR_WRIST", 1, 0.15, source_path="wrist/missed.png", threshold=0.15),  # at it: normal
]
BLESSED_TFMA = TfmaGate(blessed=True, thresholds=["overall: AUC at least 0.700"], failures=[])


def card(study: dict | None = None, tfma: TfmaGate = BLESSED_TFMA, served_version: int = 0) -> dict:
    return build_card(
        model_name="mura",
        data_root="/data/mura",
        split_images={"train": sum(TRAIN_COUNTS.values()), "eval": 11, "test": len(IMAGES)},
        train_counts=TRAIN_COUNTS,
        study={**(study or gated_study_report(on_lower_bound=False)), "split": "test"},
        facts=plain_facts(),
        tfma=tfma,
        served_version=served_version,
        images=IMAGES,
    )


def test_train_counts_per_body_part_and_label_sum_to_the_train_images() -> None:
    data = card()["model_parameters"]["data"]
    rows = {row["body_part"]: row for row in data["train_images_per_body_part"]}
    assert list(rows) == ["XR_ELBOW", "XR_HAND", "XR_WRIST", "total"]
    assert rows["XR_HAND"] == {"body_part": "XR_HAND", "normal": 40, "abnormal": 25, "images": 65}
    assert (rows["XR_ELBOW"]["normal"], rows["XR_WRIST"]["abnormal"]) == (0, 0)  # a label never seen is a 0
    assert rows["total"]["images"] == sum(TRAIN_COUNTS.values()) == data["images_per_split"]["train"]
    assert rows["total"]["abnormal"] == sum(n for (_, label), n in TRAIN_COUNTS.items() if label == 1)


def test_the_metrics_and_their_intervals_are_the_study_evaluations_own() -> None:
    study = gated_study_report(on_lower_bound=False)
    built = card(study)
    assert built["quantitative_analysis"]["performance_metrics"] == study["rows"]
    page = to_html(built)
    for row in study["rows"]:
        assert f"[{row['kappa_low']:.3f}, {row['kappa_high']:.3f}]" in page
        assert f"[{row['auroc_low']:.3f}, {row['auroc_high']:.3f}]" in page
    assert "over 1000\nresamples" in page


def test_a_blessed_card_names_its_thresholds_baseline_and_calibration() -> None:
    built = card(served_version=3)
    gate = built["gate"]
    assert gate["blessed"] and gate["verdict"].startswith("blessed by both evaluations (overall study kappa")
    assert gate["baseline"] == {"served_version": 3}
    assert built["quantitative_analysis"]["calibration"]["chosen"]["method"] == "none"
    page = to_html(built)
    assert "Promotion gate: blessed" in page and "overall: AUC at least 0.700" in page
    assert "version 3, the model served" in page and "none (the network&#39;s own probability)" in page
    assert "not a medical device" in page and "A candidate the gate blessed" in page


def test_a_refused_models_card_says_refused_and_why() -> None:
    study = gated_study_report(on_lower_bound=True)  # the floor sits above the lower bound
    failed = TfmaGate(False, ["overall: AUC at least 0.900"], ["overall: AUC 0.612 is below the floor 0.900"])
    gate = card(study, tfma=failed)["gate"]
    assert not gate["blessed"] and not gate["study"]["blessed"] and not gate["tfma"]["blessed"]
    reason = f"is not above the floor {study['kappa_floor']}"
    assert gate["verdict"].startswith("refused, not pushed: TFMA's thresholds; lower bound of the 95 % interval")
    assert gate["verdict"].endswith(reason) and gate["study"]["reason"].endswith(reason)
    assert gate["baseline"] == {"served_version": None}
    page = to_html(card(study, tfma=failed))
    assert "Promotion gate: refused" in page and "Failed: overall: AUC 0.612 is below the floor 0.900" in page
    assert "judged by the floors alone" in page and "A candidate the gate refused: not pushed." in page


def test_failure_modes_count_each_parts_mistakes_at_its_threshold_worst_first() -> None:
    hand, wrist = failure_modes(IMAGES, worst_per_kind=1)
    assert (hand["false_negatives"], hand["abnormal_images"], hand["false_positives"], hand["normal_images"]) == (
        2,
        3,
        1,
        2,
    )
    assert hand["false_negative_rate"] == pytest.approx(2 / 3) and hand["false_positive_rate"] == 0.5
    assert hand["worst_false_negatives"] == [
        {"source_path": "hand/missed-worst.png", "probability": 0.1, "threshold": 0.5}
    ]
    assert [w["source_path"] for w in wrist["worst_false_positives"]] == ["wrist/raised.png"]
    assert [w["source_path"] for w in wrist["worst_false_negatives"]] == ["wrist/missed.png"]


def test_every_body_part_has_its_rows_on_the_page() -> None:
    page = to_html(card())
    # training, evaluation, failure modes, and the hand's operating point: the only part the facts hold
    for part, tables in (("XR_HAND", 4), ("XR_WRIST", 3), ("XR_ELBOW", 1)):
        assert page.count(f"<td>{part}") == tables, part
    assert "hand/missed-worst.png" in page and "wrist/raised.png" in page


def test_the_json_round_trips_and_a_pushed_card_says_its_version() -> None:
    built = card()
    assert json.loads(to_json(built)) == built
    pushed = with_version(built, 4, "/serving/mura/4")
    assert pushed["model_details"]["version"] == {"name": "4", "pushed_to": "/serving/mura/4"}
    assert built["model_details"]["version"] is None  # the candidate's card is left as it was
    assert "<title>Model card: mura version 4</title>" in to_html(pushed) and "Pushed to /serving/mura/4." in to_html(
        pushed
    )


def test_the_page_escapes_what_it_reads_from_the_run() -> None:
    hostile = '<script>alert("x")</script>'
    built = card()
    built["model_parameters"]["data"]["source"] = hostile
    built["considerations"]["failure_modes"][0]["worst_false_negatives"][0]["source_path"] = hostile
    assert "<script" not in to_html(built)


def test_the_pushed_version_carries_the_runs_card(pipeline_run) -> None:
    """On the shared run (its gate opened, so its model is pushed): the card in the version's assets.extra/ holds
    the train split's own counts per body part and label, the study evaluation's own figures, and its version."""
    run, _ = pipeline_run
    outputs = find_run_outputs(run.metadata)
    assert outputs.pushed_to and outputs.model_card
    folder = os.path.join(outputs.pushed_to, CARD_DIR)
    pushed = read_card(folder)
    files = tf.io.gfile.glob(os.path.join(outputs.split_uri("examples", "train"), "*"))
    spec = {"body_part": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    counted = Counter(
        (example["body_part"].numpy().decode(), int(example["label"]))
        for example in tf.data.TFRecordDataset(files, compression_type="GZIP").map(
            lambda record: tf.io.parse_single_example(record, spec)
        )
    )
    data = pushed["model_parameters"]["data"]
    *parts, total = data["train_images_per_body_part"]
    in_card = {(row["body_part"], label): row[key] for row in parts for label, key in ((0, "normal"), (1, "abnormal"))}
    assert in_card == {(part, label): counted[(part, label)] for part in BODY_PARTS for label in (0, 1)}
    assert total["images"] == data["images_per_split"]["train"] == sum(counted.values())
    study = read_study_report(outputs.study_evaluation)
    assert pushed["quantitative_analysis"]["performance_metrics"] == study["rows"]
    assert pushed["gate"]["blessed"] and pushed["gate"]["study"]["kappa_floor"] == study["kappa_floor"]
    version = os.path.basename(outputs.pushed_to)
    assert pushed["model_details"]["version"] == {"name": version, "pushed_to": outputs.pushed_to}
    # The newest candidate's card: the same model, whether its run pushed it or (a re-run) found it served already,
    # when its gate also names the baseline it was compared with.
    candidate = read_card(outputs.model_card)
    for section in ("model_parameters", "quantitative_analysis", "considerations"):
        assert candidate[section] == pushed[section], section
    card_property = outputs.artifacts["pushed_model"].get_string_custom_property("model_card")
    assert card_property == os.path.join(folder, CARD_HTML)
    assert f"<title>Model card: mura version {version}</title>" in Path(card_property).read_text()
