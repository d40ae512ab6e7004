"""Custom TFX components: MURA ingestion and the gates that stop a run on bad data or bad models."""

import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf_keras); this must hold before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
