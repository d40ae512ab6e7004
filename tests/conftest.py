import dataclasses

import pytest

import mura  # noqa: F401  (Keras 2 before TensorFlow loads)
from mura.config import PROFILES, GateConfig, RunConfig, SampleConfig, Settings
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
TINY_SETTINGS = Settings(profile="smoke", train=TINY_TRAIN, gate=PERMISSIVE_GATE)


def tiny_settings(run: RunConfig, **sections: object) -> Settings:
    """The shared run's settings with another run folder (and any section replaced)."""
    return dataclasses.replace(TINY_SETTINGS, run=run, **sections)


@pytest.fixture(scope="session")
def pipeline_run(sample_root, tmp_path_factory: pytest.TempPathFactory):
    """One run of the whole pipeline (BeamDagRunner) on the tiny sample, shared by every test that inspects one.

    Returns the run's configuration and its ingestion summary.
    """
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from analysis.summaries import read_ingestion_summary
    from pipeline.definition import create_pipeline

    run = RunConfig(data_root=str(sample_root), pipeline_root=str(tmp_path_factory.mktemp("pipeline")))
    BeamDagRunner().run(create_pipeline(tiny_settings(run)))
    return run, read_ingestion_summary(run.metadata)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the shared pipeline run (directly or through another fixture) is end to end."""
    for item in items:
        if "pipeline_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
