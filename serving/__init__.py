"""Serving: TF Serving's model folder layout, its configs, a local server and clients."""

import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf_keras); this must hold before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
