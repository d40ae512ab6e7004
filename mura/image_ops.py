"""Image decoding and resizing, written once for Transform, serving and the benchmarks."""

from __future__ import annotations

import tensorflow as tf


def decode_to_square(image: tf.Tensor, size: int) -> tf.Tensor:
    """Encoded PNG/JPEG bytes (gray or colour, any size) -> uint8 [size, size, 1], aspect kept, padded.

    Undecodable bytes raise InvalidArgumentError: never a silent zero image.
    """
    pixels = tf.io.decode_image(image, channels=1, expand_animations=False)
    pixels.set_shape([None, None, 1])
    resized = tf.image.resize_with_pad(pixels, size, size, method=tf.image.ResizeMethod.BILINEAR, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def decode_batch_to_square(images: tf.Tensor, size: int) -> tf.Tensor:
    """A [batch] string tensor -> uint8 [batch, size, size, 1]."""
    return tf.map_fn(
        lambda image: decode_to_square(image, size),
        images,
        fn_output_signature=tf.TensorSpec([size, size, 1], tf.uint8),
    )


def parse_pixels(serialized: tf.Tensor, size: int) -> tf.Tensor:
    """A batch of Transform's serialized pixels -> uint8 [batch, size, size, 1]."""
    return tf.map_fn(
        lambda one: tf.ensure_shape(tf.io.parse_tensor(one, tf.uint8), [size, size, 1]),
        tf.reshape(serialized, [-1]),
        fn_output_signature=tf.TensorSpec([size, size, 1], tf.uint8),
    )
