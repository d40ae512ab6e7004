"""MURA's official evaluation as a component: study-level kappa and AUROC per body part, and a blessing.

It scores the raw `test` examples through the candidate's own `serving_examples` signature (so what is measured
is what will be served: calibrated probabilities, each image judged at its body part's operating point), averages
image probabilities per study, writes the paper-style table (JSON and CSV, each figure with its 95 % bootstrap
interval), the calibration on the test split before and after, and the official scoring script's input, and
blesses the model when the overall study kappa (or the lower bound of its interval) is above the floor.
"""

import csv
import dataclasses
import io
import json
import os

import tensorflow as tf
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing
from tfx.utils import io_utils, path_utils

from components.artifacts import StudyEvaluation
from mura import features
from mura.calibration import measure
from mura.signatures import EXAMPLES_INPUT, PROBABILITY, SERVING_EXAMPLES, THRESHOLD, UNCALIBRATED_PROBABILITY
from mura.study_gate import GateDecision, decide
from mura.study_metrics import (
    CONFIDENCE,
    ImagePrediction,
    StudyMetrics,
    aggregate_studies,
    official_rows,
    study_path,
    study_table,
)

METRICS_JSON = "study_metrics.json"
METRICS_CSV = "study_metrics.csv"
PREDICTIONS_CSV = "predictions.csv"  # header-less Study,Model rows, as MURA's scoring script reads them
IMAGE_PREDICTIONS_CSV = "image_predictions.csv"  # one row per test image, for reports on single images
IMAGE_PREDICTION_FIELDS = [
    "source_path",
    "study_id",
    "body_part",
    "label",
    "probability",
    "uncalibrated_probability",
    "threshold",
]

_SPEC = {
    features.LABEL: tf.io.FixedLenFeature([], tf.int64),
    features.BODY_PART: tf.io.FixedLenFeature([], tf.string),
    features.STUDY_ID: tf.io.FixedLenFeature([], tf.string),
    features.SOURCE_PATH: tf.io.FixedLenFeature([], tf.string),
}


def score_images(model_dir: str, files: "list[str]", batch_size: int) -> "list[ImagePrediction]":
    predict = tf.saved_model.load(model_dir).signatures[SERVING_EXAMPLES]
    images = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        answer = predict(**{EXAMPLES_INPUT: batch})
        uncalibrated, threshold = answer[UNCALIBRATED_PROBABILITY].numpy(), answer[THRESHOLD].numpy()
        parsed = tf.io.parse_example(batch, _SPEC)
        for i, p in enumerate(answer[PROBABILITY].numpy()):
            source = parsed[features.SOURCE_PATH][i].numpy().decode()
            images.append(
                ImagePrediction(
                    study_id=parsed[features.STUDY_ID][i].numpy().decode(),
                    body_part=parsed[features.BODY_PART][i].numpy().decode(),
                    label=int(parsed[features.LABEL][i]),
                    probability=float(p),
                    study_path=study_path(source),
                    source_path=source,
                    uncalibrated_probability=float(uncalibrated[i]),
                    threshold=float(threshold[i]),
                )
            )
    return images


def body_part_thresholds(images: "list[ImagePrediction]") -> "dict[str, float]":
    """The operating point the model applied to each body part (serving_examples reads the examples' part)."""
    thresholds: dict[str, set[float]] = {}
    for image in images:
        thresholds.setdefault(image.body_part, set()).add(image.threshold)
    mixed = {part: sorted(found) for part, found in thresholds.items() if len(found) > 1}
    if mixed:
        raise ValueError(f"the model judged images of one body part at different thresholds: {mixed}")
    return {part: found.pop() for part, found in sorted(thresholds.items())}


def calibration_on(images: "list[ImagePrediction]") -> dict:
    """Log loss, expected calibration error and reliability bins of the images' probabilities, before and after
    the model's calibration."""
    labels = [image.label for image in images]
    return {
        "images": len(images),
        "before": dataclasses.asdict(measure(labels, [image.uncalibrated_probability for image in images])),
        "after": dataclasses.asdict(measure(labels, [image.probability for image in images])),
    }


def read_study_report(evaluation_uri: str) -> dict:
    """The evaluation's study_metrics.json: the table, the thresholds, the gate's decision and the calibration."""
    with tf.io.gfile.GFile(os.path.join(evaluation_uri, METRICS_JSON)) as handle:
        return json.load(handle)


def read_image_predictions(evaluation_uri: str) -> "list[ImagePrediction]":
    """The evaluation's image_predictions.csv read back: each test image's probabilities and its threshold."""
    path = os.path.join(evaluation_uri, IMAGE_PREDICTIONS_CSV)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: the run predates per-image predictions; run the pipeline again")
    with tf.io.gfile.GFile(path) as handle:
        return [
            ImagePrediction(
                study_id=r["study_id"],
                body_part=r["body_part"],
                label=int(r["label"]),
                probability=float(r["probability"]),
                source_path=r["source_path"],
                uncalibrated_probability=float(r["uncalibrated_probability"]),
                threshold=float(r["threshold"]),
            )
            for r in csv.DictReader(handle)
        ]


def _csv(rows: "list[list[object]]") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _record_gate(
    decision: GateDecision, overall: StudyMetrics, evaluation: StudyEvaluation, blessing: ModelBlessing
) -> None:
    """ML Metadata's copy of the study-level figures and of which one the gate held against the floor."""
    for name in ("kappa", "kappa_low", "kappa_high", "auroc", "auroc_low", "auroc_high"):
        if getattr(overall, name) is not None:
            evaluation.set_float_custom_property(f"overall_{name}", getattr(overall, name))
    for artifact in (evaluation, blessing):
        artifact.set_string_custom_property("gate_figure", decision.figure)
        artifact.set_float_custom_property("gate_kappa", decision.kappa)
    blessing.set_int_custom_property("blessed", int(decision.blessed))


@component
def StudyEvaluator(
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    evaluation: OutputArtifact[StudyEvaluation],
    blessing: OutputArtifact[ModelBlessing],
    kappa_floor: Parameter[float] = 0.0,
    bootstrap_samples: Parameter[int] = 1000,
    bootstrap_seed: Parameter[int] = 0,
    gate_on_lower_bound: Parameter[int] = 0,  # 0 or 1: Kubeflow's run parameters carry no booleans
    split: Parameter[str] = "test",
    batch_size: Parameter[int] = 64,
) -> None:
    """Blesses the model when its overall study-level kappa on `split` (the point estimate, or with
    `gate_on_lower_bound` the lower bound of its 95 % bootstrap interval) is above `kappa_floor`."""
    split_uri = artifact_utils.get_split_uri([examples], split)  # a ValueError naming the split if it is missing
    files = tf.io.gfile.glob(io_utils.all_files_pattern(split_uri))
    if not files:
        raise ValueError(f"no examples in split '{split}' under {examples.uri}")
    model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    images = score_images(model_dir, files, batch_size)
    thresholds = body_part_thresholds(images)
    studies = aggregate_studies(images, thresholds)
    calibration = calibration_on(images)
    table = study_table(studies, bootstrap_samples, bootstrap_seed)
    decision = decide(table, kappa_floor, on_lower_bound=bool(gate_on_lower_bound))
    header = [field.name for field in dataclasses.fields(StudyMetrics)]
    intervals = {"confidence": CONFIDENCE, "bootstrap_samples": bootstrap_samples, "bootstrap_seed": bootstrap_seed}
    metrics = {"split": split, "thresholds": thresholds, **decision.to_report(), **intervals}
    report = {**metrics, "rows": [dataclasses.asdict(row) for row in table], "calibration": calibration}
    reports = {
        METRICS_JSON: json.dumps(report, indent=2),
        METRICS_CSV: _csv([header] + [[getattr(r, h) for h in header] for r in table]),
        PREDICTIONS_CSV: _csv([list(row) for row in official_rows(studies)]),
        IMAGE_PREDICTIONS_CSV: _csv(
            [IMAGE_PREDICTION_FIELDS] + [[getattr(i, f) for f in IMAGE_PREDICTION_FIELDS] for i in images]
        ),
    }
    for name, text in reports.items():
        io_utils.write_string_file(os.path.join(evaluation.uri, name), text)
    _record_gate(decision, table[-1], evaluation, blessing)
    evaluation.set_float_custom_property("ece", calibration["after"]["ece"])
    evaluation.set_float_custom_property("uncalibrated_ece", calibration["before"]["ece"])
    logging.info("Study level: %s", decision.reason())
