"""Domain code for MURA: the dataset layout, its reader, splits and the synthetic generator.

Nothing here imports TFX: it is plain Python, NumPy and TensorFlow, testable in milliseconds.
"""

import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf_keras); this must hold before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
