"""The promotion gate's TFMA half in the shared pipeline run, and the runs that follow it: a second good model is
compared with the first and pushed as the next version; a candidate that fails the comparison is not pushed."""

import dataclasses
import glob
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from analysis.metadata import completed_executions, open_store, outputs_of, property_value
from analysis.tfma_results import failures, image_table
from components.modules.kappa_metric import CohenKappa
from components.study_evaluator import score_images
from mura.layout import BODY_PARTS
from tests.conftest import PERMISSIVE_GATE, TINY_TRAIN


@pytest.fixture(scope="module")
def first_evaluation(pipeline_run):
    """The Evaluator's first execution: the run that had no blessed model before it."""
    run, _ = pipeline_run
    store = open_store(run.metadata)
    return outputs_of(store, completed_executions(store, "Evaluator")[0])


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_the_kappa_metric_matches_sklearn(pairs: list[tuple[int, int]]) -> None:
    labels, verdicts = np.array(pairs).T
    counts = {
        "tp": float(np.sum((labels == 1) & (verdicts == 1))),
        "tn": float(np.sum((labels == 0) & (verdicts == 0))),
        "fp": float(np.sum((labels == 0) & (verdicts == 1))),
        "fn": float(np.sum((labels == 1) & (verdicts == 0))),
    }
    expected = cohen_kappa_score(labels, verdicts, labels=[0, 1])
    assert CohenKappa().result(**counts) == pytest.approx(0.0 if np.isnan(expected) else expected)


def test_the_kappa_metric_by_hand() -> None:
    # 10 images: 4 true positives, 3 true negatives, 2 false positives, 1 false negative.
    observed, expected = 0.7, (5 * 6 + 5 * 4) / 100
    assert CohenKappa().result(tp=4, tn=3, fp=2, fn=1) == pytest.approx((observed - expected) / (1 - expected))


def test_tfma_slices_overall_and_by_body_part_with_every_metric(first_evaluation) -> None:
    uri = first_evaluation["ModelEvaluation"].uri
    result = tfma.load_eval_result(uri)
    slices = {dict(key).get("body_part", "overall") for key, _ in result.slicing_metrics}
    assert slices == {*BODY_PARTS, "overall"}
    overall = next(metrics[""][""] for key, metrics in result.slicing_metrics if not key)
    for name in ("example_count", "auc", "auc_precision_recall", "binary_accuracy", "precision", "recall"):
        assert name in overall, name
    assert {"cohen_kappa", "calibration", "mean_label", "mean_prediction"} <= set(overall)
    plots = next(plots[""][""] for key, plots in result.plots if not key)
    assert {"calibrationHistogramBuckets", "confusionMatrixAtThresholds"} <= set(plots)
    rows = image_table(uri)
    assert [row["group"] for row in rows] == [*sorted(BODY_PARTS), "overall"]
    assert rows[-1]["examples"] == sum(row["examples"] for row in rows[:-1])
    assert all(row["auc_change"] is None for row in rows)  # nothing to compare with on the first run


def test_tfma_kappa_is_sklearns_over_the_served_predictions(pipeline_run, first_evaluation) -> None:
    run, _ = pipeline_run
    [model] = glob.glob(os.path.join(run.pipeline_root, "Trainer", "model", "*", "Format-Serving"))
    [examples] = glob.glob(os.path.join(run.pipeline_root, "MuraExampleGen", "examples", "*"))
    images = score_images(model, glob.glob(os.path.join(examples, "Split-test", "*")), batch_size=16)
    labels = [image.label for image in images]
    verdicts = [int(image.probability > TINY_TRAIN.threshold) for image in images]
    expected = cohen_kappa_score(labels, verdicts, labels=[0, 1])
    overall = image_table(first_evaluation["ModelEvaluation"].uri)[-1]
    assert overall["examples"] == len(images)
    assert overall["kappa"] == pytest.approx(0.0 if np.isnan(expected) else expected, abs=1e-6)


def test_the_first_model_is_judged_by_the_floors_and_blessed(first_evaluation) -> None:
    assert property_value(first_evaluation["ModelBlessing"].custom_properties, "blessed") == 1
    assert failures(first_evaluation["ModelEvaluation"].uri) == []


def _rerun(pipeline_run, tmp_path: Path, train, gate):
    """The shared run's metadata and serving root copied aside, then run again with other settings."""
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline.definition import create_pipeline
    from tests.conftest import tiny_settings

    run, _ = pipeline_run
    root = tmp_path / "rerun"
    shutil.copytree(run.pipeline_root, root)
    rerun = dataclasses.replace(run, pipeline_root=str(root))
    before = _digest(root / "serving")
    BeamDagRunner().run(create_pipeline(tiny_settings(rerun, train=train, gate=gate)))
    return rerun, open_store(rerun.metadata), before


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(str(p.relative_to(folder)).encode() + p.read_bytes() for p in files)).hexdigest()


def test_a_second_good_model_is_compared_with_the_first_and_pushed_as_version_2(pipeline_run, tmp_path) -> None:
    train = dataclasses.replace(TINY_TRAIN, steps_per_epoch=TINY_TRAIN.steps_per_epoch + 1)  # a new model
    gate = dataclasses.replace(PERMISSIVE_GATE, auc_min_change=-1.0)  # any change is fine: it must be measured
    rerun, store, _ = _rerun(pipeline_run, tmp_path, train, gate)
    [first, second] = completed_executions(store, "Trainer")
    evaluation = outputs_of(store, completed_executions(store, "Evaluator")[-1])
    rows = image_table(evaluation["ModelEvaluation"].uri)
    assert all(row["auc_change"] is not None for row in rows if row["auc"] is not None)
    assert property_value(evaluation["ModelBlessing"].custom_properties, "blessed") == 1
    pushed = outputs_of(store, completed_executions(store, "VersionedPusher")[-1])["PushedModel"]
    assert property_value(pushed.custom_properties, "pushed_version") == 2
    assert sorted(os.listdir(os.path.join(rerun.serving, "mura"))) == ["1", "2"]
    assert len(completed_executions(store, "Transform")) == 1  # only the training settings changed: Transform is reused
    assert first.id < second.id


def test_a_candidate_worse_than_the_served_model_is_not_pushed(pipeline_run, tmp_path) -> None:
    """The candidate must beat the latest blessed model, itself, by 0.5 AUC: it cannot, so nothing moves."""
    gate = dataclasses.replace(PERMISSIVE_GATE, auc_min_change=0.5)
    rerun, store, before = _rerun(pipeline_run, tmp_path, TINY_TRAIN, gate)
    evaluation = outputs_of(store, completed_executions(store, "Evaluator")[-1])
    assert property_value(evaluation["ModelBlessing"].custom_properties, "blessed") == 0
    [failure] = failures(evaluation["ModelEvaluation"].uri)
    assert failure.startswith("overall: auc change against the baseline ")
    assert failure.endswith(" is below the required change +0.500")
    pushed = outputs_of(store, completed_executions(store, "VersionedPusher")[-1])["PushedModel"]
    assert property_value(pushed.custom_properties, "pushed") == 0
    assert property_value(pushed.custom_properties, "not_pushed_because") == "TFMA's thresholds"
    assert sorted(os.listdir(os.path.join(rerun.serving, "mura"))) == ["1"]
    assert _digest(Path(rerun.serving)) == before
