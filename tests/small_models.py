"""Small SavedModels with the project's serving interface, for the server's own tests: built in a second, loaded in
a fraction of one, so tests can push a dozen versions.

`serving_default` takes `images` (encoded PNG/JPEG bytes) and answers `probability`, `abnormal` and `threshold`
like the Trainer's export. Each version answers its own constant probability (`marker`), so a test can tell from a
REST answer which version served it, and carries `ballast` float32 weights, so that a version left in memory shows
in the process' resident memory.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

THRESHOLD = 0.5


class _Tiny(tf.Module):
    def __init__(self, marker: float, ballast: int) -> None:
        super().__init__()
        self.marker = tf.Variable(marker, dtype=tf.float32)
        self.ballast = tf.Variable(tf.random.uniform([ballast], seed=1), dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serving_default(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        def one(data: tf.Tensor) -> tf.Tensor:
            pixels = tf.image.decode_image(data, channels=1, expand_animations=False)
            return tf.cast(tf.reduce_max(pixels), tf.float32) * 0.0  # decoded, as the real model does

        decoded = tf.map_fn(one, images, fn_output_signature=tf.float32)
        # The ballast is read (multiplied by zero), so it is part of the graph and must stay loaded.
        probability = decoded + self.marker + tf.reduce_min(self.ballast) * 0.0
        return {
            "probability": probability,
            "abnormal": tf.cast(probability > THRESHOLD, tf.int64),
            "threshold": tf.fill(tf.shape(probability), THRESHOLD),
        }


def export(path: Path, marker: float = 0.25, ballast: int = 1 << 20) -> Path:
    """A SavedModel at `path` whose `serving_default` answers `marker` for every image."""
    module = _Tiny(marker, ballast)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default})
    return path


def add_version(base: Path, version: int, source: Path) -> Path:
    """`source` copied in as <base>/<version>, renamed into place whole (as the pusher does)."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))
    return base / str(version)


def one_version(root: Path, marker: float) -> Path:
    """<root>/mura with version 1 answering `marker` (little ballast): what a served folder holds after a push."""
    (root / "mura").mkdir()
    add_version(root / "mura", 1, export(root / "export", marker=marker, ballast=16))
    return root / "mura"


def png(seed: int = 0, size: tuple[int, int] = (24, 16)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
