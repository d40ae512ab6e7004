"""Logs a sample of the requests the server answers, as TF Serving's request logging does (a sampling rate, a
bounded log): each image of a sampled request becomes a tf.Example (`mura.request_log`), for `mura drift`.

Open-source TF Serving cannot do this itself: it ships no log collector, and a `logging_config` stops it at startup
("No request-logger-creator provided"). Files rotate after `records_per_file` images and the oldest are deleted
past `max_files`, so the log never grows without bound; every record is flushed as it is written, so a server that
dies loses at most the record it was writing. Logging never fails a request: a write that fails is counted and
the request answered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time

import numpy as np
import tensorflow as tf

from mura import features
from mura.config import ServingConfig
from mura.examples import as_text, example_features, one_image, text_feature
from mura.request_log import FILE_PREFIX, FILE_SUFFIX, LoggedImage, log_files
from mura.signatures import BODY_PART_INPUT, BODY_PARTS_INPUT, EXAMPLES_INPUT, IMAGE_PROBABILITIES, IMAGES_INPUT
from mura.signatures import PROBABILITY as PROBABILITY_OUTPUT

log = logging.getLogger(__name__)
Inputs = dict[str, np.ndarray]
RequestImage = tuple[bytes, str]  # an image's encoded bytes, and the body part the request gave for it ("": none)


def request_images(dtypes: dict[str, tf.DType], inputs: Inputs) -> list[RequestImage]:
    """The images a request holds, each with the body part the request gave for it ("" when none), whatever the
    signature: `images` (with `body_parts` or a study's `body_part`), or `examples` with their own body part."""
    if dtypes.get(IMAGES_INPUT) == tf.string:
        images = list(inputs[IMAGES_INPUT].reshape(-1))
        if BODY_PARTS_INPUT in inputs:
            parts = [as_text(part) for part in inputs[BODY_PARTS_INPUT].reshape(-1)]
        else:
            parts = [as_text(inputs[BODY_PART_INPUT].reshape(-1)[0]) if BODY_PART_INPUT in inputs else ""] * len(images)
        return list(zip(images, parts, strict=False))
    if dtypes.get(EXAMPLES_INPUT) == tf.string:
        return [_example_image(record) for record in inputs[EXAMPLES_INPUT].reshape(-1)]
    return []


def _example_image(record: bytes) -> RequestImage:
    """Raises ValueError when the record is not an example holding one image."""
    feature = example_features(record)
    return one_image(feature), text_feature(feature, features.BODY_PART)


def image_probabilities(outputs: Inputs, count: int) -> list[float | None]:
    """The model's answer per image: a study signature's per-image probabilities, else `probability` when it has
    one value per image; None where the signature gives none."""
    for key in (IMAGE_PROBABILITIES, PROBABILITY_OUTPUT):
        values = outputs.get(key)
        if values is not None and values.size == count:
            return [float(value) for value in values.reshape(-1)]
    return [None] * count


class RequestLogger:
    """One open file at a time, shared by every transport's threads under a lock."""

    def __init__(
        self, directory: str, sampling_rate: float, records_per_file: int, max_files: int, seed: int | None = None
    ) -> None:
        self.directory, self.sampling_rate = directory, sampling_rate
        self.records_per_file, self.max_files = records_per_file, max_files
        self.logged = self.failed = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._writer: tf.io.TFRecordWriter | None = None
        self._in_file = self._files_started = 0
        # Several servers may share a folder (replicas on one volume): their file names differ by host and process.
        self._origin = f"{socket.gethostname()}-{os.getpid()}"
        tf.io.gfile.makedirs(directory)

    @classmethod
    def from_config(cls, config: ServingConfig) -> RequestLogger | None:
        if not config.request_log_dir:
            return None
        return cls(
            config.request_log_dir,
            config.request_log_sampling_rate,
            config.request_log_records_per_file,
            config.request_log_max_files,
        )

    def sampled(self) -> bool:
        """Whether to log this request: decided per request, as TF Serving's sampling_config does."""
        with self._lock:
            return self._random.random() < self.sampling_rate

    def log(self, images: list[LoggedImage]) -> None:
        with self._lock:
            try:
                for image in images:
                    self._write(image.to_example().SerializeToString())
                self.logged += len(images)
            except (OSError, tf.errors.OpError) as error:
                self.failed += len(images)
                log.warning("request log: could not write to %s: %s", self.directory, error)
                self._close_file()

    def _write(self, record: bytes) -> None:
        if self._writer is None or self._in_file >= self.records_per_file:
            self._next_file()
        self._writer.write(record)
        self._writer.flush()
        self._in_file += 1

    def _next_file(self) -> None:
        self._close_file()
        self._files_started += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{FILE_PREFIX}{stamp}-{self._origin}-{self._files_started:06d}{FILE_SUFFIX}"
        self._writer = tf.io.TFRecordWriter(os.path.join(self.directory, name))
        self._in_file = 0
        for old in log_files(self.directory)[: -self.max_files]:
            with contextlib.suppress(tf.errors.NotFoundError):  # a server sharing the folder removed it first
                tf.io.gfile.remove(old)

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        with self._lock:
            self._close_file()
