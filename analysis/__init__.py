"""Readers of a finished run: its ML Metadata, TFMA and study results, the HTML report, figures and Grad-CAM."""

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
