"""Small SavedModels with the project's serving interface, for the server's own tests: built in a second, loaded in
a fraction of one, so tests can push a dozen versions.

`serving_default` takes `images` (encoded PNG/JPEG bytes) and answers `probability`, `abnormal` and `threshold`
like the Trainer's export. Each version answers its own constant probability (`marker`), so a test can tell from a
REST answer which version served it, and carries `ballast` float32 weights, so that a version left in memory shows
in the process' resident memory.

`export_study` adds `serving_study` as the Trainer's export has it: one study's `images` and its `body_part` in, the
study's `probability` (the mean of its images'), `abnormal` and `threshold` (its part's, from `PART_THRESHOLDS`)
and `image_probabilities` out. An image's probability is its mean brightness, so studies of different images get
different answers, known in advance (`flat_png`).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

THRESHOLD = 0.5
PART_THRESHOLDS = {"XR_WRIST": 0.3, "XR_HAND": 0.7}  # any other part, or "": THRESHOLD


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


class _Study(tf.Module):
    def __init__(self, refuse_study: bool = False) -> None:
        super().__init__()
        self.refuse_study = refuse_study
        parts, thresholds = zip(*PART_THRESHOLDS.items(), strict=True)
        self.thresholds = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(parts), tf.constant(thresholds, tf.float32)), THRESHOLD
        )

    def _brightness(self, images: tf.Tensor) -> tf.Tensor:
        def one(data: tf.Tensor) -> tf.Tensor:
            pixels = tf.image.decode_image(data, channels=1, expand_animations=False)
            return tf.reduce_mean(tf.cast(pixels, tf.float32)) / 255.0

        return tf.map_fn(one, images, fn_output_signature=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serving_default(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = self._brightness(images)
        return {
            "probability": probability,
            "abnormal": tf.cast(probability > THRESHOLD, tf.int64),
            "threshold": tf.fill(tf.shape(probability), THRESHOLD),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="images"),
            tf.TensorSpec([None], tf.string, name="body_parts"),
        ]
    )
    def serving_body_part(self, images: tf.Tensor, body_parts: tf.Tensor) -> dict[str, tf.Tensor]:
        probability = self._brightness(images)
        threshold = self.thresholds.lookup(body_parts)
        return {
            "probability": probability,
            "abnormal": tf.cast(probability > threshold, tf.int64),
            "threshold": threshold,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="images"),
            tf.TensorSpec([], tf.string, name="body_part"),  # one per study: a scalar
        ]
    )
    def serving_study(self, images: tf.Tensor, body_part: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.refuse_study:  # as TF Serving's batching session refuses a scalar input, at run time
            refusal = "Batching session Run() input tensors must have at least one dimension"
            tf.debugging.Assert(tf.strings.length(body_part) < 0, [refusal])
        image_probabilities = self._brightness(images)
        probability = tf.reduce_mean(image_probabilities)
        threshold = self.thresholds.lookup(body_part)
        return {
            "probability": probability,
            "abnormal": tf.cast(probability > threshold, tf.int64),
            "threshold": threshold,
            "image_probabilities": image_probabilities,
        }


def export_study(path: Path, refuse_study: bool = False) -> Path:
    """A SavedModel at `path` with `serving_default`, `serving_body_part` and `serving_study`, all answering images'
    brightness; with `refuse_study`, `serving_study` fails as TF Serving with batching on refuses it."""
    module = _Study(refuse_study)
    signatures = {
        "serving_default": module.serving_default,
        "serving_body_part": module.serving_body_part,
        "serving_study": module.serving_study,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def add_version(base: Path, version: int, source: Path) -> Path:
    """`source` copied in as <base>/<version>, renamed into place whole (as the pusher does)."""
    staging = base / f".staging-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))
    return base / str(version)


def served(root: Path, source: Path) -> Path:
    """<root>/mura with the SavedModel `source` as version 1: what a served folder holds after a push."""
    (root / "mura").mkdir()
    add_version(root / "mura", 1, source)
    return root / "mura"


def one_version(root: Path, marker: float) -> Path:
    """A served folder whose version 1 answers `marker` (with little ballast)."""
    return served(root, export(root / "export", marker=marker, ballast=16))


def flat_png(level: int, size: tuple[int, int] = (24, 16)) -> bytes:
    """A PNG of one gray `level`: the study model's probability for it is level / 255."""
    buffer = io.BytesIO()
    Image.new("L", size, level).save(buffer, format="PNG")
    return buffer.getvalue()


def png(seed: int = 0, size: tuple[int, int] = (24, 16)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
