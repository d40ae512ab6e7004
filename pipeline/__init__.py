"""The TFX pipeline: its definition, module files, runners and configs."""

import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf_keras); this must hold before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
