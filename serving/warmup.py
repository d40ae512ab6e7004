"""TF Serving's warm-up file, read back: the requests the pusher wrote into a version, replayed when it loads."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from mura.signatures import SERVING_DEFAULT


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
