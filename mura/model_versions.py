"""TF Serving's model folder: <serving root>/<model name>/<integer version>/, the newest served.

Both sides of a push read it: the pipeline's pusher (which version comes next, is this model already served) and
the server (which versions to load).
"""

from __future__ import annotations

import os

import tensorflow as tf

FINGERPRINT = "fingerprint.pb"  # TensorFlow's hashes of the graph, signatures and weights, written on save


def versions(model_dir: str) -> list[int]:
    """The integer versions present, oldest first; other entries (temporary pushes, files) are ignored."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(model_dir))
    return sorted(int(name) for name in names if name.isdigit())


def _fingerprint(saved_model_dir: str) -> bytes | None:
    path = os.path.join(saved_model_dir, FINGERPRINT)
    return tf.io.gfile.GFile(path, "rb").read() if tf.io.gfile.exists(path) else None


def served_version_of(saved_model_dir: str, model_dir: str) -> int | None:
    """The newest version that already holds this very SavedModel, so a re-run pushes no duplicate."""
    fingerprint = _fingerprint(saved_model_dir)
    if fingerprint is None:
        return None
    for version in reversed(versions(model_dir)):
        if _fingerprint(os.path.join(model_dir, str(version))) == fingerprint:
            return version
    return None
