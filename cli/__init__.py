"""The `mura` command, on top of everything else: nothing in the project imports it."""

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
