"""The pipeline for TFX's own CLI, run locally with Beam:

    tfx pipeline create --engine beam --pipeline_path pipeline/local_runner.py
    tfx run create --engine beam --pipeline_name mura

`tfx` runs this file with no arguments of its own: settings come from `MURA_*` environment variables and the
settings file `MURA_SETTINGS` names (`mura settings` lists them; mura/settings.py says how they combine).
"""

from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

import pipeline  # noqa: F401  (before TensorFlow loads: Keras 2 and the Trainer's oneDNN kernels)
from mura.settings import load_settings
from pipeline.definition import create_pipeline


def main() -> None:
    BeamDagRunner().run(create_pipeline(load_settings()))


if __name__ == "__main__":
    main()
