"""The runners' settings: defaults, a settings file, and the environment over both."""

from pathlib import Path

import pytest

from mura.config import PROFILES, metadata_location
from pipeline.environment import settings


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    default = settings({})
    assert default.train == PROFILES["demo"] and default.run.pipeline_root.endswith("runs/pipeline")
    assert default.run.beam_pipeline_args == ("--direct_num_workers=1",)
    assert default.run.metadata == metadata_location(default.run.pipeline_root)
    assert default.run.metadata.endswith("runs/pipeline/metadata.sqlite")
    assert metadata_location("gs://b/root/", "/m/store.sqlite") == "/m/store.sqlite"
    assert metadata_location("gs://b/root/") == "gs://b/root/metadata.sqlite"
    file = tmp_path / "mura.env"
    file.write_text("# a comment\nMURA_PROFILE=smoke\nMURA_AUC_FLOOR=0.8\nMURA_DATA_ROOT=gs://bucket/mura\n")
    chosen = settings(
        {
            "MURA_SETTINGS": str(file),
            "MURA_AUC_FLOOR": "0.9",
            "MURA_BEAM_ARGS": "--runner=DataflowRunner --region='europe west'",
        }
    )
    assert chosen.train == PROFILES["smoke"]
    assert chosen.gate.auc_floor == 0.9  # the environment wins over the file
    assert chosen.run.data_root == "gs://bucket/mura"  # URIs are left alone
    assert chosen.run.beam_pipeline_args == ("--runner=DataflowRunner", "--region=europe west")


def test_bad_settings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MURA_PROFILE must be one of demo, full, smoke"):
        settings({"MURA_PROFILE": "huge"})
    file = tmp_path / "mura.env"
    file.write_text("MURA_PROFLE=smoke\n")
    with pytest.raises(ValueError, match=r"mura\.env:1: expected KEY=VALUE"):
        settings({"MURA_SETTINGS": str(file)})
