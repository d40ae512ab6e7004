"""One accepted MURA image as a tf.train.Example: its original bytes and what the CSVs say about it; and the reading
of such an example (or a client's, or a logged request's) back: its one image and its text features."""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from mura import features
from mura.reader import ImageRecord


def _bytes(value: str | bytes) -> tf.train.Feature:
    data = value.encode() if isinstance(value, str) else value
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def to_example(record: ImageRecord, image: bytes) -> tf.train.Example:
    """Keeps the encoded bytes as they are on disk: lossless, and no decode/re-encode at ingest."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE: _bytes(image),
                features.LABEL: _int(record.label),
                features.BODY_PART: _bytes(record.body_part),
                features.PATIENT_ID: _bytes(record.patient_id),
                features.STUDY_ID: _bytes(record.study_id),
                features.IMAGE_INDEX: _int(record.image_index),
                features.HEIGHT: _int(record.height),
                features.WIDTH: _int(record.width),
                features.CHANNELS: _int(record.channels),
                features.SOURCE_PATH: _bytes(record.source_path),
            }
        )
    )


def decoded_shape(image: bytes) -> tuple[int, int, int]:
    """Decodes the pixels with the decoder Transform and serving use; raises ValueError when they don't decode."""
    try:
        pixels = tf.io.decode_image(image, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as error:
        raise ValueError(error.message.splitlines()[0]) from None
    height, width, channels = pixels.shape
    return int(height), int(width), int(channels)


FeatureMap = Mapping[str, tf.train.Feature]


def example_features(record: bytes) -> FeatureMap:
    """Raises ValueError when the record is not a serialized tf.Example."""
    try:
        return tf.train.Example.FromString(record).features.feature
    except Exception:  # protobuf's DecodeError, or worse on random bytes
        raise ValueError("examples must be serialized tf.Example protos") from None


def one_image(feature: FeatureMap) -> bytes:
    """Raises ValueError unless the example holds exactly one encoded image."""
    images = feature[features.IMAGE].bytes_list.value if features.IMAGE in feature else []
    if len(images) != 1:
        raise ValueError(f"each example needs exactly one '{features.IMAGE}' bytes value, got {len(images)}")
    return images[0]


def as_text(value: bytes | str) -> str:
    """Bytes a client sent as text: decoded, an undecodable byte replaced rather than refused."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def text_feature(feature: FeatureMap, key: str) -> str:
    """A bytes feature's first value as text; "" when the example does not have it."""
    values = feature[key].bytes_list.value if key in feature else []
    return as_text(values[0]) if values else ""
