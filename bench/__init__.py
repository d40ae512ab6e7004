"""Benchmarks: every figure is a ratio against a baseline measured side by side in the same run.

`python -m bench` runs them all and writes docs/PERFORMANCE.md; `python -m bench.<name>` runs one.
"""

import os

# tf_keras (Keras 2) must be chosen before TensorFlow is first imported, and every benchmark imports it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
