"""Benchmarks: every figure is a ratio against a baseline measured side by side in the same run.

`python -m bench` runs them all and writes docs/PERFORMANCE.md; `python -m bench.<name>` runs one.
"""

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
