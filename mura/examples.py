"""One accepted MURA image as a tf.train.Example: its original bytes and what the CSVs say about it."""

from __future__ import annotations

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
