"""TF Serving's model folder: <serving root>/<model name>/<integer version>/, the newest served.

A version folder must appear whole, or a server polling the folder loads half a model: pushes are copied under a
hidden temporary name and renamed into place (atomic on local disks and PVCs; object stores have no atomic rename).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import tensorflow as tf


def versions(model_dir: str) -> list[int]:
    """The integer versions present, oldest first; other entries (temporary pushes, files) are ignored."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(model_dir))
    return sorted(int(name) for name in names if name.isdigit())


def _copy_tree(source: str, target: str) -> None:
    for folder, _, files in tf.io.gfile.walk(source):
        relative = os.path.relpath(folder, source)
        destination = os.path.normpath(os.path.join(target, relative))
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), os.path.join(destination, name), overwrite=True)


FINGERPRINT = "fingerprint.pb"  # TensorFlow's hashes of the graph, signatures and weights, written on save


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


def push(saved_model_dir: str, model_dir: str, prepare: Callable[[str], object] | None = None) -> int:
    """Copies a SavedModel in as the next version (newest + 1) and returns that version.

    `prepare` may add files (TF Serving's warm-up requests) to the staged copy before it appears.
    """
    if not tf.io.gfile.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no SavedModel at {saved_model_dir}")
    tf.io.gfile.makedirs(model_dir)
    version = (versions(model_dir) or [0])[-1] + 1
    staging = os.path.join(model_dir, f".pushing-{version}-{uuid.uuid4().hex[:8]}")
    _copy_tree(saved_model_dir, staging)
    if prepare is not None:
        prepare(staging)
    tf.io.gfile.rename(staging, os.path.join(model_dir, str(version)))
    return version
