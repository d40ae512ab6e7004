"""TF Serving's warm-up file: requests replayed when a version loads, so the first client does not pay for
graph tracing. Written into every pushed version at `assets.extra/tf_serving_warmup_requests`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from mura.signatures import IMAGES_INPUT, SERVING_DEFAULT

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def warmup_images() -> list[bytes]:
    """A gray PNG and a colour JPEG of different sizes: both decode paths get traced."""
    gray = tf.io.encode_png(tf.fill([320, 256, 1], tf.constant(90, tf.uint8)))
    colour = tf.io.encode_jpeg(tf.fill([200, 300, 3], tf.constant(140, tf.uint8)))
    return [gray.numpy(), colour.numpy()]


def write_warmup_requests(saved_model_dir: str, model_name: str) -> str:
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_DEFAULT)
    )
    request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(warmup_images(), dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(signature name, inputs) of each predict request in a warm-up file; nothing when there is none."""
    if not tf.io.gfile.exists(path):
        return
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        yield (
            request.model_spec.signature_name or SERVING_DEFAULT,
            {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()},
        )
