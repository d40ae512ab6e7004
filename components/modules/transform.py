"""Transform's preprocessing_fn: raw image bytes -> the square grayscale uint8 pixels the model reads.

The same graph runs at serving (attached to the SavedModel as `tft_layer`), so there is no training/serving skew.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from mura import features
from mura.image_ops import decode_batch_to_square

IMAGE_SIZE = "image_size"  # the only setting Transform reads: other training changes leave its cache valid


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    size = int(custom_config[IMAGE_SIZE])
    images = tf.reshape(inputs[features.IMAGE], [-1])
    pixels = decode_batch_to_square(images, size)
    label = tf.reshape(inputs[features.LABEL], [-1])
    body_part = tf.reshape(inputs[features.BODY_PART], [-1])
    # Counted once over the train split, so the Trainer weights classes without another pass over the data.
    tft.vocabulary(
        tf.strings.join([body_part, tf.strings.as_string(label)], separator=":"),
        vocab_filename=features.LABEL_COUNTS_VOCABULARY,
        store_frequency=True,
    )
    # At serving only `image` is fed; TFT then computes just the outputs that depend on it.
    return {
        features.PIXELS: tf.map_fn(tf.io.serialize_tensor, pixels, fn_output_signature=tf.string),
        features.LABEL: label,
        features.BODY_PART: body_part,
        features.STUDY_ID: tf.reshape(inputs[features.STUDY_ID], [-1]),
        features.SOURCE_PATH: tf.reshape(inputs[features.SOURCE_PATH], [-1]),
    }
