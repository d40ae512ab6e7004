"""Copies a SavedModel into TF Serving's folder layout as the next version, with TF Serving's warm-up requests.

A version folder must appear whole, or a server polling the folder loads half a model: pushes are copied under a
hidden temporary name and renamed into place (atomic on local disks and PVCs; object stores have no atomic rename).
"""

from __future__ import annotations

import os
import uuid

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx.utils import io_utils

from mura.model_card import CARD_DIR, with_version, write_card
from mura.model_versions import versions
from mura.signatures import IMAGES_INPUT, SERVING_DEFAULT, WARMUP_FILE


def warmup_images() -> list[bytes]:
    """A gray PNG and a colour JPEG of different sizes: both decode paths get traced."""
    gray = tf.io.encode_png(tf.fill([320, 256, 1], tf.constant(90, tf.uint8)))
    colour = tf.io.encode_jpeg(tf.fill([200, 300, 3], tf.constant(140, tf.uint8)))
    return [gray.numpy(), colour.numpy()]


def write_warmup_requests(saved_model_dir: str, model_name: str) -> str:
    """Requests TF Serving replays when a version loads, so the first client does not pay for graph tracing."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_DEFAULT)
    )
    request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(warmup_images(), dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    path = os.path.join(saved_model_dir, WARMUP_FILE)  # = TFX's path_utils.warmup_file_path; serving reads WARMUP_FILE
    io_utils.write_tfrecord_file(path, log)
    return path


def push(saved_model_dir: str, model_dir: str, model_name: str, card: dict | None = None) -> int:
    """Copies a SavedModel in as the next version (newest + 1), warm-up requests and the model card (stamped with
    the version) included, and returns that version. Neither touches the SavedModel's fingerprint, so a re-run still
    finds the model served."""
    if not tf.io.gfile.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no SavedModel at {saved_model_dir}")
    tf.io.gfile.makedirs(model_dir)
    version = (versions(model_dir) or [0])[-1] + 1
    staging = os.path.join(model_dir, f".pushing-{version}-{uuid.uuid4().hex[:8]}")
    io_utils.copy_dir(saved_model_dir, staging)
    write_warmup_requests(staging, model_name)
    if card is not None:
        destination = os.path.join(model_dir, str(version))
        write_card(os.path.join(staging, CARD_DIR), with_version(card, version, destination))
    tf.io.gfile.rename(staging, os.path.join(model_dir, str(version)))
    return version
