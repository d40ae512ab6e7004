"""Serving: TF Serving's configs, the project's TF Serving-compatible server, and clients."""

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
