"""The promotion gate's TFMA half in the shared pipeline run, and the runs that follow it: a second model, trained
through `mura pipeline run --set ...` from a local weights file, is compared with the first and pushed as the next
version; a candidate that fails the comparison or a floor is not pushed. The floors are placed around the first
model's real AUCs, so the verdicts hinge on measured figures, not on a constant model's kappa of 0."""

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from analysis.metadata import open_store, outputs_of, property_value
from analysis.run_outputs import find_run_outputs
from analysis.tfma_results import image_table
from components.modules.kappa_metric import CohenKappa
from components.tfma_gate import failures
from mura.layout import BODY_PARTS
from tests.conftest import PERMISSIVE_GATE, TINY_TRAIN
from tests.run_records import completed, latest_trainer, served_test_images, trained_epochs


@pytest.fixture(scope="module")
def first_evaluation(pipeline_run):
    """The Evaluator's first execution: the run that had no blessed model before it."""
    run, _ = pipeline_run
    store = open_store(run.metadata)
    return outputs_of(store, completed(store, "Evaluator")[0])


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


def test_tfma_measures_the_served_model_on_the_test_images(pipeline_run, first_evaluation) -> None:
    """TFMA's figures per slice against the trained model's own answers on the raw test images (model and examples
    found through ML Metadata): same images, same probabilities (their mean), AUC and kappa as sklearn's."""
    run, _ = pipeline_run
    served = served_test_images(run.metadata)
    uri = first_evaluation["ModelEvaluation"].uri
    rows = {row["group"]: row for row in image_table(uri)}
    means = {
        dict(key).get("body_part", "overall"): {
            name: metrics[name]["doubleValue"] for name in ("mean_label", "mean_prediction")
        }
        for key, by_output in tfma.load_eval_result(uri).slicing_metrics
        for metrics in [by_output[""][""]]
    }
    assert set(rows) == set(means) == {*BODY_PARTS, "overall"}
    for group, row in rows.items():
        images = [image for image in served if group in ("overall", image.body_part)]
        labels = np.array([image.label for image in images])
        probabilities = np.array([image.probability for image in images])
        assert row["examples"] == len(images), group
        assert means[group]["mean_label"] == pytest.approx(labels.mean(), abs=1e-9), group
        assert means[group]["mean_prediction"] == pytest.approx(probabilities.mean(), abs=1e-6), group
        verdicts = (probabilities > TINY_TRAIN.threshold).astype(int)
        kappa = cohen_kappa_score(labels, verdicts, labels=[0, 1])
        assert row["kappa"] == pytest.approx(0.0 if np.isnan(kappa) else kappa, abs=1e-6), group
        if len(set(labels)) < 2:
            continue
        # TFMA counts at 10,000 thresholds: a positive and a negative image in one bucket count half a pair.
        positives, negatives = probabilities[labels == 1], probabilities[labels == 0]
        same_bucket = np.sum(np.abs(positives[:, None] - negatives[None, :]) < 1.0001e-4)
        bound = 0.5 * same_bucket / (len(positives) * len(negatives)) + 1e-6
        assert abs(row["auc"] - roc_auc_score(labels, probabilities)) <= bound, group
    assert np.ptp([image.probability for image in served]) > 1e-4  # the figures above compare differing scores


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


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    """A local ResNet50V2 (no top) weights file, as a user without network brings, and its first kernel."""
    import tf_keras as keras

    base = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path_factory.mktemp("weights") / "resnet50v2_notop.h5")
    base.save_weights(path)
    return path, base.get_layer("conv1_conv").kernel.numpy()


@pytest.fixture(scope="module")
def second_run(pipeline_run, weights_file, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the shared run, run again by `mura pipeline run` with two training settings given by --set (which
    make a new model) and any AUC change allowed: (pipeline root, metadata path, CLI result)."""
    from cli.main import main

    run, _ = pipeline_run
    root = tmp_path_factory.mktemp("second") / "pipeline"
    shutil.copytree(run.pipeline_root, root)
    args = ["pipeline", "run", "--profile", "smoke", "--data-root", run.data_root, "--json", str(root / "run.json")]
    args += ["--pipeline-root", str(root), "--kappa-floor", "-1", "--auc-floor", "0", "--auc-min-change", "-1"]
    args += ["--set", "train.finetune_epochs=2", "--set", f"train.base_weights={weights_file[0]}"]
    result = CliRunner().invoke(main, args)
    return root, str(root / "metadata.sqlite"), result


def test_the_run_shows_its_progress_and_writes_its_summary(second_run) -> None:
    """Without --verbose: each component as it runs (from the cache, or how long it took) and one line per
    epoch; the exit code says pushed, and --json holds the verdict and where the model went."""
    root, _, result = second_run
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.output.splitlines()
    assert any(line.endswith("MuraExampleGen: from TFX's cache") for line in lines)
    assert any(re.search(r"Trainer: done in \d+\.\d s$", line) for line in lines)
    epochs = [line for line in lines if re.match(r"\s+epoch \d/2  loss \d", line)]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"] and "eval AUC" in epochs[0]
    assert not any("I tensorflow" in line or "INFO:" in line for line in lines)  # TFX's own logs stay hidden
    summary = json.loads((root / "run.json").read_text())
    assert summary["verdict"] == "pushed" and summary["pushed_to"] == str(root / "serving" / "mura" / "2")
    assert summary["table"][-1]["group"] == "overall" and summary["tfma_failures"] == []


def test_set_options_reach_the_trainer_which_trains_from_the_weights_file(second_run, weights_file) -> None:
    _, metadata, result = second_run
    assert result.exit_code == 0, (result.output, result.exception)
    config, model_run = latest_trainer(metadata)
    assert (config["finetune_epochs"], config["base_weights"]) == (2, weights_file[0])
    assert (config["image_size"], config["steps_per_epoch"]) == (TINY_TRAIN.image_size, TINY_TRAIN.steps_per_epoch)
    assert trained_epochs(model_run) == 2  # head_epochs is 0 in the smoke profile: the two fine-tuning epochs
    # The bottom of ResNet50V2 stays frozen while its top is tuned: the trained model still holds the file's kernel.
    model = find_run_outputs(metadata).require("model").serving_model
    variables = tf.train.load_checkpoint(os.path.join(model, "variables", "variables"))
    [conv1] = [
        name
        for name, shape in variables.get_variable_to_shape_map().items()
        if shape == [7, 7, 3, 64] and not name.startswith("optimizer/")
    ]
    np.testing.assert_array_equal(variables.get_tensor(conv1), weights_file[1])


def test_a_second_good_model_is_compared_with_the_first_and_pushed_as_version_2(second_run) -> None:
    root, metadata, result = second_run
    assert result.exit_code == 0, (result.output, result.exception)
    store = open_store(metadata)
    [first, second] = completed(store, "Trainer")
    assert first.id < second.id
    evaluation = outputs_of(store, completed(store, "Evaluator")[-1])
    rows = image_table(evaluation["ModelEvaluation"].uri)
    assert all(row["auc_change"] is not None for row in rows if row["auc"] is not None)
    assert any(row["auc_change"] is not None for row in rows)
    assert property_value(evaluation["ModelBlessing"].custom_properties, "blessed") == 1
    pushed = outputs_of(store, completed(store, "VersionedPusher")[-1])["PushedModel"]
    assert property_value(pushed.custom_properties, "pushed_version") == 2
    assert sorted(os.listdir(root / "serving" / "mura")) == ["1", "2"]
    assert f"Pushed to {root / 'serving' / 'mura' / '2'}" in result.output
    assert len(completed(store, "Transform")) == 1  # only the training settings changed: Transform is reused


def test_a_candidate_below_a_floor_or_no_better_than_the_served_model_is_not_pushed(
    pipeline_run, first_evaluation, tmp_path
) -> None:
    """The first model again (a cache hit), gated by figures placed around its real AUCs from the first run: the
    overall floor just below its AUC (met), the body-part floor between two body parts' AUCs (the parts below it
    fail, the others pass), and a required gain of 0.5 over the served model, itself (missed)."""
    measured = {row["group"]: row["auc"] for row in image_table(first_evaluation["ModelEvaluation"].uri)}
    parts = {part: auc for part, auc in measured.items() if part != "overall"}
    assert None not in measured.values(), measured
    values = sorted(set(parts.values()))
    assert len(values) > 1, f"every body part has the same AUC, no floor between them: {parts}"
    low, high = max(itertools.pairwise(values), key=lambda pair: pair[1] - pair[0])
    part_floor = (low + high) / 2
    gate = dataclasses.replace(
        PERMISSIVE_GATE, auc_floor=measured["overall"] - 0.001, body_part_auc_floor=part_floor, auc_min_change=0.5
    )
    rerun, store, before = _rerun(pipeline_run, tmp_path, TINY_TRAIN, gate)
    evaluation = outputs_of(store, completed(store, "Evaluator")[-1])
    assert property_value(evaluation["ModelBlessing"].custom_properties, "blessed") == 0
    found = failures(evaluation["ModelEvaluation"].uri)
    [change] = [failure for failure in found if failure.startswith("overall:")]
    assert change.startswith("overall: auc change against the baseline ")
    assert change.endswith(" is below the required change +0.500")
    below = [failure for failure in found if failure != change]
    assert sorted(failure.split(":")[0] for failure in below) == sorted(
        p for p, auc in parts.items() if auc < low + 1e-9
    )
    assert all(failure.endswith(f" is below the floor {part_floor:.3f}") for failure in below)
    pushed = outputs_of(store, completed(store, "VersionedPusher")[-1])["PushedModel"]
    assert property_value(pushed.custom_properties, "pushed") == 0
    assert property_value(pushed.custom_properties, "not_pushed_because") == "TFMA's thresholds"
    assert sorted(os.listdir(os.path.join(rerun.serving, "mura"))) == ["1"]
    assert _digest(Path(rerun.serving)) == before
