"""What an image looks like, in numbers a drift check can compare: its size, channels and intensities.

Computed the same way for training images and served ones (`mura drift`), so a difference is the data's, not the
code's. Intensities are those of the gray image the model decodes (PNG or JPEG, 8-bit), sampled on a grid so that
their histogram stands for the image's whatever its size.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

HEIGHT, WIDTH, ASPECT_RATIO, CHANNELS = "height", "width", "aspect_ratio", "channels"
MEAN_INTENSITY, INTENSITY_SPREAD, INTENSITY = "mean_intensity", "intensity_spread", "intensity"
NUMERIC = (HEIGHT, WIDTH, ASPECT_RATIO, MEAN_INTENSITY, INTENSITY_SPREAD, INTENSITY)
CATEGORICAL = (CHANNELS,)  # and the body part, when requests give one
GRID = 16  # intensities sampled per image: GRID x GRID


def image_profile(image: bytes) -> dict[str, float | int | list[float]]:
    """Raises ValueError when the bytes do not decode as an image."""
    try:
        pixels = tf.io.decode_image(image, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as error:
        raise ValueError(error.message.splitlines()[0]) from None
    height, width, channels = (int(size) for size in pixels.shape)
    gray = tf.image.rgb_to_grayscale(pixels[..., :3]) if channels >= 3 else pixels[..., :1]
    values = tf.cast(gray, tf.float32).numpy()
    grid = tf.image.resize(values, [GRID, GRID], method="nearest").numpy().reshape(-1)
    return {
        HEIGHT: height,
        WIDTH: width,
        ASPECT_RATIO: height / width,
        CHANNELS: channels,
        MEAN_INTENSITY: float(values.mean()),
        INTENSITY_SPREAD: float(values.std()),
        INTENSITY: [float(value) for value in np.round(grid, 1)],
    }
