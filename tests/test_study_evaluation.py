"""StudyEvaluator in the shared pipeline run: MURA's study-level table, the official CSV, the blessing."""

import csv
import dataclasses
import glob
import json
import os
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.metadata import latest_execution, open_store, outputs_of, property_value
from components.artifacts import StudyEvaluation
from mura.layout import BODY_PARTS


@pytest.fixture(scope="module")
def evaluation(pipeline_run):
    run, _ = pipeline_run
    store = open_store(run.metadata)
    outputs = outputs_of(store, latest_execution(store, "StudyEvaluator"))
    return outputs[StudyEvaluation.TYPE_NAME], outputs["ModelBlessing"]


def test_the_table_has_every_body_part_and_overall(evaluation) -> None:
    artifact, _ = evaluation
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    rows = {row["group"]: row for row in report["rows"]}
    assert list(rows) == [*sorted(BODY_PARTS), "overall"]
    assert all(-1.0 <= row["kappa"] <= 1.0 for row in rows.values())
    assert rows["overall"]["studies"] == sum(rows[part]["studies"] for part in BODY_PARTS)
    assert (rows["XR_WRIST"]["radiologist_kappa"], rows["XR_WRIST"]["paper_kappa"]) == (0.931, 0.931)
    with open(os.path.join(artifact.uri, "study_metrics.csv")) as handle:
        assert next(csv.reader(handle)) == ["group", "studies", "kappa", "auroc", "radiologist_kappa", "paper_kappa"]


def test_the_official_predictions_cover_every_test_study_and_give_the_kappa(evaluation, sample_root: Path) -> None:
    artifact, _ = evaluation
    with open(os.path.join(artifact.uri, "predictions.csv")) as handle:
        predictions = {row[0]: int(row[1]) for row in csv.reader(handle)}
    with open(sample_root / "MURA-v1.1" / "valid_labeled_studies.csv") as handle:
        truth = {row[0]: int(row[1]) for row in csv.reader(handle)}
    assert set(predictions) == set(truth)
    assert set(predictions.values()) <= {0, 1}
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    overall = report["rows"][-1]["kappa"]
    studies = sorted(truth)
    expected = cohen_kappa_score([truth[s] for s in studies], [predictions[s] for s in studies], labels=[0, 1])
    assert overall == pytest.approx(0.0 if expected != expected else expected)  # sklearn gives nan for 0/0


def test_the_blessing_follows_the_kappa_floor(evaluation) -> None:
    artifact, blessing = evaluation
    report = json.loads(Path(artifact.uri, "study_metrics.json").read_text())
    kappa = report["rows"][-1]["kappa"]
    assert property_value(artifact.custom_properties, "overall_kappa") == pytest.approx(kappa)
    assert property_value(blessing.custom_properties, "blessed") == int(kappa > report["kappa_floor"])
    assert report["blessed"] == (kappa > report["kappa_floor"])
    assert glob.glob(os.path.join(artifact.uri, "*.csv"))


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
    """The same run again with an unreachable kappa floor: upstream comes from TFX's cache, the gate says no."""
    import hashlib
    import shutil

    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline.definition import create_pipeline
    from tests.conftest import PERMISSIVE_GATE, tiny_settings

    run, _ = pipeline_run
    root = tmp_path / "rerun"
    shutil.copytree(run.pipeline_root, root)  # metadata and serving root; cached artifacts stay where they are
    rerun = dataclasses.replace(run, pipeline_root=str(root))

    def digest() -> str:
        files = sorted((root / "serving").rglob("*"))
        return hashlib.sha256(b"".join(p.read_bytes() for p in files if p.is_file())).hexdigest()

    before = digest()
    gate = dataclasses.replace(PERMISSIVE_GATE, study_kappa_floor=1.01)
    BeamDagRunner().run(create_pipeline(tiny_settings(rerun, gate=gate)))
    store = open_store(rerun.metadata)
    blessing = outputs_of(store, latest_execution(store, "StudyEvaluator"))["ModelBlessing"]
    pushed = outputs_of(store, latest_execution(store, "VersionedPusher"))["PushedModel"]
    assert property_value(blessing.custom_properties, "blessed") == 0
    assert property_value(pushed.custom_properties, "pushed") == 0
    assert property_value(pushed.custom_properties, "not_pushed_because") == "the study-level kappa floor"
    assert sorted(os.listdir(root / "serving" / "mura")) == ["1"]
    assert digest() == before
    trainers = [e for e in store.get_executions() if e.type.endswith("Trainer")]
    assert len(trainers) == 2 and trainers[-1].last_known_state == trainers[-1].CACHED


def test_mura_pipeline_run_prints_the_table_and_where_the_model_went(pipeline_run) -> None:
    """The shared run again through the CLI: training is a cache hit; the Evaluator now compares the model with
    itself as the latest blessed one, and the same model is not pushed twice."""
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
    assert "predictions.csv" in result.stdout
    assert "Image-level results on the test split (TFMA)" in result.stdout
    assert sorted(os.listdir(os.path.join(run.serving, "mura"))) == ["1"]
