"""The MURA domain: dataset layout, reader, splits, synthetic data, study metrics and the Keras model.

No TFX, no serving, no command line here. Every other package of the project imports this one first, so this is
the one place that selects Keras 2 (tf_keras), which TFX 1.16 and TFMA 0.47 expect: it must hold before
TensorFlow is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
