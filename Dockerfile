# The pipeline image for Kubeflow Pipelines: TFX 1.16's own image with this project installed at /mura, so every
# component (custom executors, run_fn, preprocessing_fn, the schema file) is importable by its module path.
ARG TFX_IMAGE=gcr.io/tfx-oss-public/tfx:1.16.0
FROM ${TFX_IMAGE}

WORKDIR /mura
# Keras 2 and oneDNN's CPU kernels, as mura/__init__.py and pipeline/__init__.py select them for local runs: TFX's
# container entrypoint imports TensorFlow before any project module could (see docs/PERFORMANCE.md, training step).
ENV TF_USE_LEGACY_KERAS=1 \
    TF_ENABLE_ONEDNN_OPTS=1 \
    PYTHONDONTWRITEBYTECODE=1

# What the steps need at run time (no test, lint or notebook tools), pinned as in the lock; then the project.
COPY requirements-runtime.txt ./
RUN pip install --no-cache-dir -r requirements-runtime.txt
COPY pyproject.toml README.md ./
# What runs inside the pipeline's steps, and nothing else: the domain, the components and module files, and the
# pipeline's definition (its schema file is read by ImportSchemaGen).
COPY mura mura
COPY components components
COPY pipeline pipeline
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && python -c "import pipeline.definition"

# Steps run as an unprivileged user; HOME gives Beam and TensorFlow a place for their caches.
RUN useradd --create-home --uid 1000 mura
USER 1000
ENV HOME=/home/mura
