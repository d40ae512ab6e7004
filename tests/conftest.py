import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

from mura.config import PROFILES, DataConfig, GateConfig, RunConfig, SampleConfig
from mura.synthetic.dataset import write_sample

# Tiny shapes: enough studies for every body part and split, small images.
TINY_SAMPLE = SampleConfig(studies_per_part=6, seed=7, max_side=96)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory):
    """One synthetic MURA for every test that only reads it."""
    root = tmp_path_factory.mktemp("sample")
    write_sample(root, TINY_SAMPLE, workers=1, progress=False)
    return root


# The full pipeline in miniature: 32-pixel images, a few steps. Enough to exercise every component for real.
TINY_TRAIN = PROFILES["smoke"]
# Floors no model misses, so the barely trained tiny model is blessed and pushed.
PERMISSIVE_GATE = GateConfig(study_kappa_floor=-1.0, auc_floor=0.0)


@pytest.fixture(scope="session")
def pipeline_run(sample_root, tmp_path_factory: pytest.TempPathFactory):
    """One run of the whole pipeline (BeamDagRunner) on the tiny sample, shared by every test that inspects one.

    Returns the run's configuration and its ingestion summary.
    """
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline.definition import create_pipeline
    from pipeline.ingest import read_ingestion_summary

    run = RunConfig(data_root=str(sample_root), pipeline_root=str(tmp_path_factory.mktemp("pipeline")))
    BeamDagRunner().run(create_pipeline(run, DataConfig(), TINY_TRAIN, PERMISSIVE_GATE))
    return run, read_ingestion_summary(run.metadata)
