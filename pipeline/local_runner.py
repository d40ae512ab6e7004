"""The pipeline for TFX's own CLI, run locally with Beam:

    tfx pipeline create --engine beam --pipeline_path pipeline/local_runner.py
    tfx run create --engine beam --pipeline_name mura

Settings come from MURA_* environment variables (see pipeline/environment.py and the README).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads: TFX 1.16 needs Keras 2
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as in pipeline/__init__.py: the Trainer's CPU kernels

from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from mura.config import DataConfig
from pipeline.definition import create_pipeline
from pipeline.environment import settings


def main() -> None:
    chosen = settings()
    BeamDagRunner().run(create_pipeline(chosen.run, DataConfig(), chosen.train, chosen.gate))


if __name__ == "__main__":
    main()
