"""The exported model's signatures, with its calibration and its operating points inside the graph.

The calibration's slope and intercept are constants of the graph and the thresholds a lookup table (body part ->
threshold, the global one for "" and unknown parts), so TF Serving needs nothing beside the SavedModel; the same
facts, and how they were chosen, are written as JSON in `assets.extra/` (MODEL_FACTS_FILE) for readers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import tensorflow as tf
import tf_keras as keras
from tfx.utils import io_utils

from mura import features
from mura.calibration import Calibration, CalibrationReport
from mura.operating_points import OperatingPoints
from mura.signatures import (
    ABNORMAL,
    BODY_PART_INPUT,
    BODY_PARTS_INPUT,
    EXAMPLES_INPUT,
    IMAGE_PROBABILITIES,
    IMAGES_INPUT,
    MODEL_FACTS_FILE,
    PROBABILITY,
    SERVING_BODY_PART,
    SERVING_DEFAULT,
    SERVING_EXAMPLES,
    SERVING_STUDY,
    THRESHOLD,
    UNCALIBRATED_PROBABILITY,
)

# Log-odds of a float32 sigmoid: clipped where it rounds to 0 or 1 (|logit| about 16).
_EPSILON = 1e-7
# Encoded PNG/JPEG bytes [n] -> uint8 pixels [n, size, size, 1], as the model was trained on them.
Preprocess = Callable[[tf.Tensor], tf.Tensor]


def logit(probability: tf.Tensor) -> tf.Tensor:
    """The sigmoid output's log-odds: what calibration is fitted on after training and applied to in the graph."""
    p = tf.clip_by_value(tf.cast(probability, tf.float32), _EPSILON, 1.0 - _EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)


def serving_signatures(
    model: keras.Model, preprocess: Preprocess, calibration: Calibration, points: OperatingPoints
) -> dict:
    """Every signature scores images the same way (preprocess, network, calibration); they differ in the threshold
    each image or study is judged at. Attaches the threshold table to `model`, so saving it saves the table."""
    thresholds = points.thresholds()
    model.operating_points = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(thresholds), tf.string), tf.constant(list(thresholds.values()), tf.float32)
        ),
        default_value=tf.constant(points.overall.threshold, tf.float32),
    )

    def score(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(calibrated, uncalibrated) probabilities of a batch of encoded images."""
        output = model({features.PIXELS: preprocess(images)}, training=False)
        uncalibrated = tf.reshape(tf.cast(output, tf.float32), [-1])
        if calibration.method == "none":
            return uncalibrated, uncalibrated
        return tf.sigmoid(calibration.slope * logit(uncalibrated) + calibration.intercept), uncalibrated

    def verdict(probability: tf.Tensor, body_parts: tf.Tensor) -> dict[str, tf.Tensor]:
        """The probability, judged at its body part's operating point (images and studies alike)."""
        threshold = model.operating_points.lookup(body_parts)
        return {PROBABILITY: probability, ABNORMAL: tf.cast(probability > threshold, tf.int64), THRESHOLD: threshold}

    def judge(images: tf.Tensor, body_parts: tf.Tensor) -> dict[str, tf.Tensor]:
        probability, uncalibrated = score(images)
        return {**verdict(probability, body_parts), UNCALIBRATED_PROBABILITY: uncalibrated}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)])
    def serve_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return judge(images, tf.fill(tf.shape(images), ""))  # no body part: the global threshold

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=IMAGES_INPUT),
            tf.TensorSpec([None], tf.string, name=BODY_PARTS_INPUT),
        ]
    )
    def serve_body_parts(images: tf.Tensor, body_parts: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_equal(
            tf.size(images), tf.size(body_parts), message=f"give one of {BODY_PARTS_INPUT} per image"
        )
        return judge(images, body_parts)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {
            features.IMAGE: tf.io.FixedLenFeature([], tf.string),
            features.BODY_PART: tf.io.FixedLenFeature([], tf.string, default_value=""),
        }
        parsed = tf.io.parse_example(examples, spec)
        return judge(parsed[features.IMAGE], parsed[features.BODY_PART])

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=IMAGES_INPUT),
            tf.TensorSpec([], tf.string, name=BODY_PART_INPUT),
        ]
    )
    def serve_study(images: tf.Tensor, body_part: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_positive(tf.size(images), message="a study needs at least one image")
        probabilities, _ = score(images)
        probability = tf.reduce_mean(probabilities)  # MURA's protocol: the mean of the study's images'
        return {**verdict(probability, body_part), IMAGE_PROBABILITIES: probabilities}

    return {
        SERVING_DEFAULT: serve_images,
        SERVING_EXAMPLES: serve_examples,
        SERVING_BODY_PART: serve_body_parts,
        SERVING_STUDY: serve_study,
    }


def model_facts(report: CalibrationReport, points: OperatingPoints) -> dict:
    """What the graph holds and how it was chosen: calibration (method, parameters, eval log loss and expected
    calibration error before and after, the reliability bins), the rule and each body part's threshold."""
    calibration = dataclasses.asdict(report)
    calibration["chosen"]["temperature"] = report.chosen.temperature
    operating_points = dataclasses.asdict(points)
    operating_points["thresholds"] = {"global": points.overall.threshold, **points.thresholds()}
    return {"calibration": calibration, "operating_points": operating_points}


def write_model_facts(saved_model_dir: str, facts: dict) -> str:
    path = os.path.join(saved_model_dir, MODEL_FACTS_FILE)
    io_utils.write_string_file(path, json.dumps(facts, indent=2))
    return path


def read_model_facts(saved_model_dir: str) -> dict:
    path = os.path.join(saved_model_dir, MODEL_FACTS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: the model predates calibration; train it again")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)
