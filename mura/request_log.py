"""What the server logs of a request: one tf.Example per image, its bytes as they came and what the request said
about it. The image and body part keep the pipeline's feature names, so a logged image reads like an ingested one.

Written by the server (`serving.request_log`), read by `mura drift`. A log is a folder of TFRecord files whose
names sort by when they were started; the file a server was writing when it died may end in a torn record, which
the reader counts and skips instead of failing on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import tensorflow as tf

from mura import features
from mura.examples import example_features, one_image, text_feature

FILE_PREFIX = "requests-"
FILE_SUFFIX = ".tfrecord"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SIGNATURE_NAME = "signature_name"
LOGGED_AT = "logged_at"  # seconds since the epoch
PROBABILITY = "probability"  # the model's answer for this image, when its signature gives one per image


@dataclass(frozen=True)
class LoggedImage:
    image: bytes
    body_part: str = ""  # "" when the request did not say
    model_name: str = ""
    model_version: int = 0
    signature_name: str = ""
    logged_at: float = 0.0
    probability: float | None = None

    def to_example(self) -> tf.train.Example:
        feature = {
            features.IMAGE: _bytes(self.image),
            features.BODY_PART: _bytes(self.body_part.encode()),
            MODEL_NAME: _bytes(self.model_name.encode()),
            MODEL_VERSION: tf.train.Feature(int64_list=tf.train.Int64List(value=[self.model_version])),
            SIGNATURE_NAME: _bytes(self.signature_name.encode()),
            LOGGED_AT: tf.train.Feature(float_list=tf.train.FloatList(value=[self.logged_at])),
        }
        if self.probability is not None:
            feature[PROBABILITY] = tf.train.Feature(float_list=tf.train.FloatList(value=[self.probability]))
        return tf.train.Example(features=tf.train.Features(feature=feature))

    @classmethod
    def from_example(cls, record: bytes) -> LoggedImage:
        """Raises ValueError for a record that is not a logged image."""
        feature = example_features(record)
        probability = feature[PROBABILITY].float_list.value if PROBABILITY in feature else []
        return cls(
            image=one_image(feature),
            body_part=text_feature(feature, features.BODY_PART),
            model_name=text_feature(feature, MODEL_NAME),
            model_version=(feature[MODEL_VERSION].int64_list.value if MODEL_VERSION in feature else [0])[0],
            signature_name=text_feature(feature, SIGNATURE_NAME),
            logged_at=(feature[LOGGED_AT].float_list.value if LOGGED_AT in feature else [0.0])[0],
            probability=probability[0] if probability else None,
        )


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def log_files(path: str) -> list[str]:
    """A log folder's files, oldest first; a file path alone is its own log."""
    if not tf.io.gfile.isdir(path):
        return [path]
    names = [name for name in tf.io.gfile.listdir(path) if name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX)]
    return [os.path.join(path, name) for name in sorted(names)]


@dataclass
class RequestLog:
    """What a log holds, and what of it could not be read."""

    images: list[LoggedImage] = field(default_factory=list)  # filled by read_request_log, not by streaming
    read: int = 0  # logged images read
    files: int = 0
    torn_files: list[str] = field(default_factory=list)  # ended in a partial or corrupt record: read up to it
    unreadable_records: int = 0  # whole records that are not logged images


def read_request_log(path: str) -> RequestLog:
    """Every logged image under `path` (a log folder or one file), in the order they were logged, held in memory."""
    log = RequestLog()
    log.images = list(stream_request_log(path, log))
    return log


def stream_request_log(path: str, log: RequestLog) -> Iterator[LoggedImage]:
    """The logged images one at a time (a bounded log can still hold more than memory), counting files, torn
    files and unreadable records into `log` as it reads."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no request log at {path}")
    for name in log_files(path):
        log.files += 1
        for record in _records(name, log):
            try:
                image = LoggedImage.from_example(record)
            except ValueError:
                log.unreadable_records += 1
                continue
            log.read += 1
            yield image


def _records(path: str, log: RequestLog) -> Iterator[bytes]:
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            yield next(iterator).numpy()
        except StopIteration:
            return
        except tf.errors.DataLossError:
            log.torn_files.append(path)
            return
