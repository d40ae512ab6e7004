"""StudyEvaluator in the shared pipeline run: MURA's study-level table, the official CSV, the blessing."""

import csv
import glob
import json
import os
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from mura.layout import BODY_PARTS
from pipeline.metadata import latest_execution, open_store, outputs_of, property_value


@pytest.fixture(scope="module")
def evaluation(pipeline_run):
    run, _ = pipeline_run
    store = open_store(run.metadata)
    outputs = outputs_of(store, latest_execution(store, "StudyEvaluator"))
    return outputs["MuraStudyEvaluation"], outputs["ModelBlessing"]


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
    assert property_value(blessing.custom_properties, "blessed") == int(kappa >= report["kappa_floor"])
    assert report["blessed"] == (kappa >= report["kappa_floor"])
    assert glob.glob(os.path.join(artifact.uri, "*.csv"))
