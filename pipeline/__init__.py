"""The pipeline's definition (one factory for every runner) and its runners: local Beam, TFX's CLI, Kubeflow."""

import os

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)

# oneDNN's CPU kernels for the pipeline's processes (the Trainer's among them). TensorFlow leaves them off on CPUs
# without AVX-512 (this project's 2-core machines among them), where its own convolution gradients are slow at
# small spatial sizes: measured at the demo's 64 px, a whole-network training step 2x faster and a fine-tuning one
# 8x. Not for serving: there batch-1 inference was 2x slower with them, and `mura serve` never imports pipeline.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
