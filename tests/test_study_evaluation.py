"""StudyEvaluator in the shared pipeline run: MURA's study-level table, the official CSV, the blessing, checked
against the trained model's own answers on the raw test images (tests/run_records.py) and sklearn."""

import csv
import itertools
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, log_loss, roc_auc_score

from analysis.metadata import latest_execution, open_store, outputs_of, property_value
from analysis.run_outputs import find_run_outputs
from components.artifacts import ModelCard, StudyEvaluation
from components.modules.export import read_model_facts
from mura.layout import BODY_PARTS
from mura.model_card import CARD_DIR, CARD_HTML, read_card
from mura.study_metrics import ImagePrediction, aggregate_studies, study_table
from tests.run_records import ServedImage, completed, served_test_images

GROUPS = [*sorted(BODY_PARTS), "overall"]


@pytest.fixture(scope="module")
def evaluation(pipeline_run):
    run, _ = pipeline_run
    store = open_store(run.metadata)
    outputs = outputs_of(store, latest_execution(store, "StudyEvaluator"))
    return outputs[StudyEvaluation.TYPE_NAME], outputs["ModelBlessing"]


@pytest.fixture(scope="module")
def served(pipeline_run) -> tuple[ServedImage, ...]:
    """The trained model's answers on the raw test images, through `serving_default`."""
    run, _ = pipeline_run
    return served_test_images(run.metadata)


def report_rows(artifact) -> dict[str, dict]:
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    return {row["group"]: row for row in report["rows"]}


def study_means(served: tuple[ServedImage, ...]) -> dict[str, tuple[str, int, float]]:
    """Study id -> (body part, label, mean of its images' probabilities), computed here."""
    grouped: dict[str, list[ServedImage]] = defaultdict(list)
    for image in served:
        grouped[image.study_id].append(image)
    return {
        study: (images[0].body_part, images[0].label, float(np.mean([i.probability for i in images])))
        for study, images in sorted(grouped.items())
    }


def in_group(group: str, body_part: str) -> bool:
    return group in ("overall", body_part)


def sklearn_kappa(labels: list[int], verdicts: list[int]) -> float:
    kappa = cohen_kappa_score(labels, verdicts, labels=[0, 1])
    return 0.0 if np.isnan(kappa) else float(kappa)  # sklearn gives nan for 0/0, the project 0


def test_the_table_has_every_body_part_and_overall(evaluation, sample_root: Path) -> None:
    artifact, _ = evaluation
    rows = report_rows(artifact)
    assert list(rows) == GROUPS
    with open(sample_root / "MURA-v1.1" / "valid_labeled_studies.csv") as handle:
        studies = [row[0] for row in csv.reader(handle)]
    for part in BODY_PARTS:
        assert rows[part]["studies"] == sum(f"/{part}/" in study for study in studies), part
    assert rows["overall"]["studies"] == len(studies)
    assert (rows["XR_WRIST"]["radiologist_kappa"], rows["XR_WRIST"]["paper_kappa"]) == (0.931, 0.931)
    assert (rows["overall"]["radiologist_kappa"], rows["overall"]["paper_kappa"]) == (0.778, 0.705)
    with open(os.path.join(artifact.uri, "study_metrics.csv")) as handle:
        table = list(csv.DictReader(handle))
    figures = ["kappa", "kappa_low", "kappa_high", "auroc", "auroc_low", "auroc_high"]
    assert list(table[0]) == ["group", "studies", *figures, "radiologist_kappa", "paper_kappa"]
    assert [row["group"] for row in table] == GROUPS
    for row in table:  # the CSV says what the JSON says
        expected = rows[row["group"]]
        assert int(row["studies"]) == expected["studies"]
        for figure in figures:
            if expected[figure] is None:
                assert row[figure] == "", (row["group"], figure)
            else:
                assert float(row[figure]) == pytest.approx(expected[figure]), (row["group"], figure)
        assert expected["auroc"] is not None or expected["auroc_low"] is None


def test_every_figure_has_a_95_percent_interval_holding_it(evaluation) -> None:
    """The shared run resamples with the default settings: 1000 resamples, seed 0. With a few test studies per body
    part the intervals are wide (or, where every resample scores the same, a point), but they hold the point and
    stay within each figure's range."""
    artifact, _ = evaluation
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    assert (report["confidence"], report["bootstrap_samples"], report["bootstrap_seed"]) == (0.95, 1000, 0)
    rows = report_rows(artifact)
    for group, row in rows.items():
        assert -1.0 <= row["kappa_low"] <= row["kappa"] <= row["kappa_high"] <= 1.0, group
        if row["auroc"] is not None:
            assert 0.0 <= row["auroc_low"] <= row["auroc"] <= row["auroc_high"] <= 1.0, group
    overall = rows["overall"]
    for name in ("kappa_low", "kappa_high"):
        recorded = property_value(artifact.custom_properties, f"overall_{name}")
        assert recorded == pytest.approx(overall[name], abs=1e-6)


def test_the_model_scores_differ_and_the_image_predictions_are_the_models_own(evaluation, served) -> None:
    """image_predictions.csv holds, image by image, what the trained model answers on that image's bytes."""
    probabilities = np.array([image.probability for image in served])
    # Not one constant value: the checks below and the study-level AUROC then hinge on real, differing scores.
    assert np.ptp(probabilities) > 1e-4, f"the model gives (nearly) one probability: {sorted(set(probabilities))}"
    assert len(set(probabilities.tolist())) > len(probabilities) // 2
    assert len({image.threshold for image in served}) == 1  # serving_default: the global threshold for all
    assert all(image.abnormal == int(image.probability > image.threshold) for image in served)
    artifact, _ = evaluation
    with open(os.path.join(artifact.uri, "image_predictions.csv")) as handle:
        rows = {row["source_path"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == sorted(image.source_path for image in served)
    for image in served:
        row = rows[image.source_path]
        assert (row["study_id"], row["body_part"], int(row["label"])) == (image.study_id, image.body_part, image.label)
        assert float(row["probability"]) == pytest.approx(image.probability, abs=1e-5), image.source_path


def test_the_study_auroc_is_sklearns_on_the_means_of_the_models_probabilities(evaluation, served) -> None:
    """AUROC needs no threshold: on scores that differ it checks the study means, labels and grouping for real."""
    studies = study_means(served)
    assert len({mean for _, _, mean in studies.values()}) == len(studies)  # no ties: every study is ranked
    artifact, _ = evaluation
    rows = report_rows(artifact)
    for group in GROUPS:
        members = [(label, mean) for part, label, mean in studies.values() if in_group(group, part)]
        labels = [label for label, _ in members]
        assert rows[group]["studies"] == len(members), group
        if len(set(labels)) < 2:
            assert rows[group]["auroc"] is None, group
            continue
        expected = roc_auc_score(labels, [mean for _, mean in members])
        assert rows[group]["auroc"] == pytest.approx(expected, abs=1e-9), group
    assert {label for _, label, _ in studies.values()} == {0, 1}  # so the overall AUROC above was checked
    recorded = property_value(artifact.custom_properties, "overall_auroc")  # to 6 places
    assert recorded == pytest.approx(rows["overall"]["auroc"], abs=1e-6)


def test_the_study_kappa_at_a_threshold_that_splits_the_studies_is_sklearns(served) -> None:
    """The smoke model's probabilities differ by less than 0.01 and (in every run measured) sit below 0.5, so at its
    threshold every study gets the same verdict and kappa is 0. Here the project's table is made from the same real
    probabilities at a threshold between the study means, where kappa is not 0, and compared with sklearn's kappa
    on verdicts made here."""
    studies = study_means(served)
    means = sorted(mean for _, _, mean in studies.values())
    middles = [(low + high) / 2 for low, high in itertools.pairwise(means)]
    labels = [label for _, label, _ in studies.values()]
    # The median first, then the thresholds nearest to it: the first one at which the verdicts beat chance.
    median = float(np.median(means))
    for threshold in [median, *sorted(middles, key=lambda middle: abs(middle - median))]:
        if sklearn_kappa(labels, [int(mean > threshold) for _, _, mean in studies.values()]) != 0:
            break
    else:
        pytest.fail(f"no threshold between the study means gives a kappa other than 0: {studies}")

    images = [ImagePrediction(i.study_id, i.body_part, i.label, i.probability) for i in served]
    aggregated = aggregate_studies(images, threshold)
    assert [(s.study_id, s.label, s.abnormal) for s in aggregated] == [
        (study, label, int(mean > threshold)) for study, (_, label, mean) in studies.items()
    ]
    assert [s.probability for s in aggregated] == pytest.approx([mean for _, _, mean in studies.values()])
    table = {row.group: row for row in study_table(aggregated)}
    assert list(table) == GROUPS
    for group in GROUPS:
        members = [(label, int(mean > threshold)) for part, label, mean in studies.values() if in_group(group, part)]
        expected = sklearn_kappa([label for label, _ in members], [verdict for _, verdict in members])
        assert table[group].kappa == pytest.approx(expected, abs=1e-9), group
    assert table["overall"].kappa != 0


def test_the_official_predictions_are_the_models_study_verdicts_and_give_the_kappa(
    pipeline_run, evaluation, served, sample_root: Path
) -> None:
    artifact, _ = evaluation
    with open(os.path.join(artifact.uri, "predictions.csv")) as handle:
        predictions = {row[0]: int(row[1]) for row in csv.reader(handle)}
    with open(sample_root / "MURA-v1.1" / "valid_labeled_studies.csv") as handle:
        truth = {row[0]: int(row[1]) for row in csv.reader(handle)}
    assert set(predictions) == set(truth)
    # Each study's verdict is its images' mean probability, from the model itself, against its body part's threshold
    # as the model's facts give it.
    by_study: dict[str, list[float]] = defaultdict(list)
    for image in served:
        by_study[image.source_path.rsplit("/", 1)[0] + "/"].append(image.probability)
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    thresholds = read_model_facts(find_run_outputs(pipeline_run[0].metadata).serving_model)["operating_points"]
    thresholds = thresholds["thresholds"]
    assert report["thresholds"] == pytest.approx({part: thresholds[part] for part in report["thresholds"]}, abs=1e-7)
    assert predictions == {
        study: int(np.mean(p) > report["thresholds"][study.split("/")[2]]) for study, p in by_study.items()
    }
    overall = report_rows(artifact)["overall"]["kappa"]
    studies = sorted(truth)
    assert overall == pytest.approx(sklearn_kappa([truth[s] for s in studies], [predictions[s] for s in studies]))


def test_calibration_on_the_test_split_is_measured_before_and_after(evaluation, served) -> None:
    """Log loss and ECE of the model's own answers, before (its uncalibrated output) and after calibration."""
    artifact, _ = evaluation
    calibration = json.loads(Path(artifact.uri, "study_metrics.json").read_text())["calibration"]
    labels = [image.label for image in served]
    assert calibration["images"] == len(served)
    for when, probabilities in (
        ("before", [image.uncalibrated_probability for image in served]),
        ("after", [image.probability for image in served]),
    ):
        assert calibration[when]["log_loss"] == pytest.approx(log_loss(labels, probabilities, labels=[0, 1]), abs=1e-5)
        bins = np.minimum((np.array(probabilities) * 10).astype(int), 9)
        gaps = [
            np.sum(bins == b) * abs(np.mean(np.array(probabilities)[bins == b]) - np.mean(np.array(labels)[bins == b]))
            for b in set(bins.tolist())
        ]
        assert calibration[when]["ece"] == pytest.approx(sum(gaps) / len(labels), abs=1e-5), when
    assert property_value(artifact.custom_properties, "ece") == pytest.approx(calibration["after"]["ece"], abs=1e-6)


def test_the_blessing_follows_the_kappa_floor(evaluation) -> None:
    artifact, blessing = evaluation
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    kappa = report["rows"][-1]["kappa"]
    assert property_value(artifact.custom_properties, "overall_kappa") == pytest.approx(kappa, abs=1e-6)
    assert property_value(blessing.custom_properties, "blessed") == int(kappa > report["kappa_floor"])
    assert report["blessed"] == (kappa > report["kappa_floor"])
    assert report["kappa_floor"] == -1.0  # the shared run's: PERMISSIVE_GATE
    # The gate held the point estimate (gate_on_lower_bound is off by default), and says so.
    assert (report["gate_figure"], report["gate_kappa"]) == ("point", kappa)
    for artifact_of_the_gate in (artifact, blessing):
        assert property_value(artifact_of_the_gate.custom_properties, "gate_figure") == "point"
        assert property_value(artifact_of_the_gate.custom_properties, "gate_kappa") == pytest.approx(kappa, abs=1e-6)
    assert sorted(os.listdir(artifact.uri)) == [
        "image_predictions.csv",
        "predictions.csv",
        "study_metrics.csv",
        "study_metrics.json",
    ]


def test_a_blessed_model_is_pushed_as_version_1_of_the_serving_root(pipeline_run, evaluation) -> None:
    run, _ = pipeline_run
    _, blessing = evaluation
    assert property_value(blessing.custom_properties, "blessed") == 1  # the shared run's floor is -1
    store = open_store(run.metadata)
    pushed = outputs_of(store, latest_execution(store, "VersionedPusher"))["PushedModel"]
    assert property_value(pushed.custom_properties, "pushed") == 1
    assert property_value(pushed.custom_properties, "pushed_version") == 1
    assert sorted(os.listdir(os.path.join(run.serving, "mura"))) == ["1"]
    assert os.path.exists(os.path.join(run.serving, "mura", "1", "saved_model.pb"))


def test_an_unblessed_candidate_is_not_pushed_and_the_served_version_stays(pipeline_run, tmp_path: Path) -> None:
    """The same run again, through the CLI, with an unreachable kappa floor held against the lower bound of the
    overall kappa's interval: upstream comes from TFX's cache, the gate says no, the command exits 3 and its
    summary names the floor and the figure it was held against."""
    import hashlib
    import shutil

    from click.testing import CliRunner

    from cli.main import main

    run, _ = pipeline_run
    root = tmp_path / "rerun"
    shutil.copytree(run.pipeline_root, root)  # metadata and serving root; cached artifacts stay where they are

    def digest() -> str:
        files = sorted((root / "serving").rglob("*"))
        return hashlib.sha256(b"".join(p.read_bytes() for p in files if p.is_file())).hexdigest()

    before = digest()
    args = ["pipeline", "run", "--profile", "smoke", "--data-root", run.data_root, "--pipeline-root", str(root)]
    args += ["--kappa-floor", "1.01", "--auc-floor", "0", "--json", str(tmp_path / "run.json")]
    result = CliRunner().invoke(main, [*args, "--set", "gate.gate_on_lower_bound=true"])
    assert result.exit_code == 3, (result.output, result.exception)
    assert "lower bound of the 95 % interval of the overall study kappa" in result.output
    assert "is not above the floor 1.01" in result.output
    summary = json.loads((tmp_path / "run.json").read_text())
    assert (summary["verdict"], summary["pushed_to"], summary["blessed"]) == ("refused", "", False)
    assert summary["kappa_floor"] == 1.01
    overall = summary["table"][-1]
    assert overall["kappa_low"] <= overall["kappa"] <= overall["kappa_high"]  # the --json summary has the intervals
    assert (summary["gate_figure"], summary["gate_kappa"], summary["bootstrap_samples"]) == (
        "lower bound",
        overall["kappa_low"],
        1000,
    )
    assert "kappa 95 % CI" in result.output
    store = open_store(str(root / "metadata.sqlite"))
    blessing = outputs_of(store, latest_execution(store, "StudyEvaluator"))["ModelBlessing"]
    pushed = outputs_of(store, latest_execution(store, "VersionedPusher"))["PushedModel"]
    assert property_value(blessing.custom_properties, "blessed") == 0
    assert property_value(blessing.custom_properties, "gate_figure") == "lower bound"
    assert property_value(pushed.custom_properties, "pushed") == 0
    assert property_value(pushed.custom_properties, "not_pushed_because") == "the study-level kappa floor"
    card = read_card(outputs_of(store, latest_execution(store, "ModelCardWriter"))[ModelCard.TYPE_NAME].uri)
    assert not card["gate"]["blessed"] and card["gate"]["verdict"].endswith("is not above the floor 1.01")
    assert summary["model_card"].startswith(str(root / "ModelCardWriter"))  # the candidate's, as nothing was pushed
    assert sorted(os.listdir(root / "serving" / "mura")) == ["1"]
    assert digest() == before
    trainers = sorted((e for e in store.get_executions() if e.type.endswith("Trainer")), key=lambda e: e.id)
    assert len(trainers) >= 2 and trainers[-1].last_known_state == trainers[-1].CACHED
    assert len(completed(store, "Trainer")) == 1  # the same model was judged again, not a new one


@pytest.mark.e2e
def test_a_run_that_fails_exits_4_and_says_why(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    (tmp_path / "not-mura").mkdir()
    args = ["pipeline", "run", "--data-root", str(tmp_path / "not-mura"), "--pipeline-root", str(tmp_path / "p")]
    result = CliRunner().invoke(main, [*args, "--json", str(tmp_path / "run.json")])
    assert result.exit_code == 4, (result.output, result.exception)
    assert "is not a MURA-v1.1 folder" in result.output and "Traceback" not in result.output
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["verdict"] == "failed" and "MURA-v1.1" in summary["error"]


def test_mura_pipeline_run_prints_the_table_and_where_the_model_went(pipeline_run) -> None:
    """The shared run again through the CLI: training is a cache hit; the Evaluator now compares the model with
    itself as the served one, and the same model is not pushed twice."""
    import subprocess
    import sys

    run, _ = pipeline_run
    mura = str(Path(sys.executable).parent / "mura")
    args = ["pipeline", "run", "--data-root", run.data_root, "--profile", "smoke"]
    args += ["--pipeline-root", run.pipeline_root, "--kappa-floor", "-1", "--auc-floor", "0"]
    result = subprocess.run([mura, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    for part in BODY_PARTS:
        assert part in result.stdout
    assert "overall" in result.stdout and "0.705" in result.stdout  # the paper's model beside ours
    assert f"Pushed to {os.path.join(run.serving, 'mura', '1')}" in result.stdout
    assert f"Model card: {os.path.join(run.serving, 'mura', '1', CARD_DIR, CARD_HTML)}" in result.stdout
    assert "Trainer: from TFX's cache" in result.stdout and "The whole run took" in result.stdout
    assert "predictions.csv" in result.stdout
    assert "Image-level results on the test split (TFMA)" in result.stdout
    assert sorted(os.listdir(os.path.join(run.serving, "mura"))) == ["1"]
