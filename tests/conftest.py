import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

from mura.config import SampleConfig
from mura.synthetic.dataset import write_sample

# Tiny shapes: enough studies for every body part and split, small images.
TINY_SAMPLE = SampleConfig(studies_per_part=6, seed=7, max_side=96)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory):
    """One synthetic MURA for every test that only reads it."""
    root = tmp_path_factory.mktemp("sample")
    write_sample(root, TINY_SAMPLE, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def ingestion_run(sample_root, tmp_path_factory: pytest.TempPathFactory):
    """One ingestion pipeline run (BeamDagRunner) on the tiny sample, shared by the tests that inspect it."""
    from mura.config import DataConfig, RunConfig
    from pipeline.ingest import run_ingestion

    run = RunConfig(data_root=str(sample_root), pipeline_root=str(tmp_path_factory.mktemp("ingest")))
    return run, run_ingestion(run, DataConfig())
