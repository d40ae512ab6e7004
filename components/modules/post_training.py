"""After training, on the eval split: fit the calibration, then choose each body part's operating point on the
calibrated study probabilities (the math is in mura/calibration.py and mura/operating_points.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio
from tfx_bsl.tfxio.tensor_representation_util import ProjectTensorRepresentationsInSchema

from components.modules.export import logit
from mura import features
from mura.calibration import CalibrationReport, calibrate
from mura.config import TrainConfig
from mura.image_ops import parse_pixels
from mura.layout import BODY_PARTS
from mura.operating_points import OperatingPoints, choose_operating_points
from mura.study_metrics import ImagePrediction, aggregate_studies

EVAL_FEATURES = (features.PIXELS, features.LABEL, features.BODY_PART, features.STUDY_ID)


@dataclass(frozen=True)
class EvalScores:
    """The eval split, image by image: what calibration and the operating points are chosen on."""

    logits: np.ndarray
    labels: np.ndarray
    body_parts: list[str]
    study_ids: list[str]


def score_eval_split(
    model: keras.Model, dataset_factory, file_patterns: list[str], schema: schema_pb2.Schema, config: TrainConfig
) -> EvalScores:
    """One pass over the whole eval split (not `eval_steps`), in order, with each image's study and body part."""
    options = tfxio.TensorFlowDatasetOptions(batch_size=config.batch_size, num_epochs=1, shuffle=False)
    dataset = dataset_factory(file_patterns, options, ProjectTensorRepresentationsInSchema(schema, EVAL_FEATURES))
    logits, labels, parts, studies = [], [], [], []
    for batch in dataset:
        pixels = parse_pixels(batch[features.PIXELS], config.image_size)
        logits.append(logit(model({features.PIXELS: pixels}, training=False)).numpy().reshape(-1))
        labels.append(tf.reshape(batch[features.LABEL], [-1]).numpy())
        parts += [part.decode() for part in tf.reshape(batch[features.BODY_PART], [-1]).numpy()]
        studies += [study.decode() for study in tf.reshape(batch[features.STUDY_ID], [-1]).numpy()]
    return EvalScores(np.concatenate(logits), np.concatenate(labels).astype(int), parts, studies)


def choose(scores: EvalScores, config: TrainConfig) -> tuple[CalibrationReport, OperatingPoints]:
    report = calibrate(config.calibration, scores.logits, scores.labels, scores.study_ids)
    probabilities = report.chosen.apply(scores.logits)
    images = [
        ImagePrediction(study, part, int(label), float(p))
        for study, part, label, p in zip(scores.study_ids, scores.body_parts, scores.labels, probabilities, strict=True)
    ]
    studies = aggregate_studies(images, config.threshold)  # only their probabilities are used
    points = choose_operating_points(
        studies,
        BODY_PARTS,
        config.operating_point,
        config.threshold,
        config.target_sensitivity,
        config.min_operating_point_studies,
    )
    logging.info(
        "Calibration %s (slope %.4g, intercept %.4g): eval log loss %.4f -> %.4f, ECE %.4f -> %.4f%s",
        report.chosen.method,
        report.chosen.slope,
        report.chosen.intercept,
        report.before.log_loss,
        report.after.log_loss,
        report.before.ece,
        report.after.ece,
        f" ({report.reason})" if report.reason else "",
    )
    for point in (points.overall, *points.parts):
        why = f", the global one: {point.fell_back}" if point.fell_back else ""
        logging.info("Operating point (%s) of %s: %.4f%s", points.rule, point.group, point.threshold, why)
    return report, points
