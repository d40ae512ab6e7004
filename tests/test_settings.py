"""Settings from one source: defaults, profile, settings files, MURA_* variables and overrides, in that order,
all derived from the dataclasses' fields; and the CLI flags made from the same fields."""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from mura.config import PROFILES, TrainConfig, metadata_location
from mura.settings import SettingsError, format_value, load_settings, setting_fields


def test_defaults_then_profile_then_file_then_environment_then_overrides(tmp_path: Path) -> None:
    default = load_settings(environ={})
    assert default.profile == "demo" and default.train == PROFILES["demo"]
    assert default.run.pipeline_root.endswith("runs/pipeline") and Path(default.run.pipeline_root).is_absolute()
    assert default.run.beam_args == ("--direct_num_workers=1",)
    assert default.run.metadata == metadata_location(default.run.pipeline_root)
    assert metadata_location("gs://b/root/", "/m/store.sqlite") == "/m/store.sqlite"
    toml = tmp_path / "mura.toml"
    toml.write_text('profile = "smoke"\n[gate]\nauc_floor = 0.8\n[run]\ndata_root = "gs://bucket/mura"\n')
    yaml_file = tmp_path / "more.yaml"
    yaml_file.write_text("train:\n  finetune_epochs: 7\n  base_weights: weights/resnet.h5\n")
    chosen = load_settings(
        files=[yaml_file],
        environ={
            "MURA_SETTINGS": str(toml),
            "MURA_GATE_AUC_FLOOR": "0.9",
            "MURA_TRAIN_FINETUNE_EPOCHS": "5",
            "MURA_RUN_BEAM_ARGS": "--runner=DataflowRunner --region='europe west'",
        },
        overrides={"train.finetune_epochs": "2", "gate.body_part_auc_floor": "none"},
    )
    assert chosen.profile == "smoke" and chosen.train.image_size == PROFILES["smoke"].image_size
    assert chosen.gate.auc_floor == 0.9  # the environment wins over the file
    assert chosen.train.finetune_epochs == 2  # an override wins over the environment and the files
    assert chosen.train.base_weights == str(Path("weights/resnet.h5").absolute())  # a local file, made absolute
    assert chosen.gate.body_part_auc_floor is None
    assert chosen.run.data_root == "gs://bucket/mura"  # URIs are left alone
    assert chosen.run.beam_args == ("--runner=DataflowRunner", "--region=europe west")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"overrides": {"train.finetune_epoch": "2"}},
            "unknown setting 'train.finetune_epoch'; did you mean train.finetune_epochs",
        ),
        ({"overrides": {"train.image_size": "big"}}, "train.image_size takes an integer"),
        ({"overrides": {"train.image_size": "8"}}, "image_size must be at least 32"),
        ({"overrides": {"data.drift_is_fatal": "perhaps"}}, "data.drift_is_fatal takes true or false"),
        ({"overrides": {"gate.bootstrap_samples": "20"}}, "bootstrap_samples must be 0 (no intervals) or at least 100"),
        (
            {"environ": {"MURA_GATE_BOOTSTRAP_SAMPLES": "0", "MURA_GATE_GATE_ON_LOWER_BOUND": "true"}},
            "gate_on_lower_bound needs an interval: set bootstrap_samples above 0",
        ),
        ({"environ": {"MURA_GATE_AUC_FLOR": "1"}}, "did you mean MURA_GATE_AUC_FLOOR"),
        ({"profile": "huge"}, "unknown profile 'huge': one of demo, full, smoke"),
    ],
)
def test_a_wrong_name_or_value_is_one_error_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(**{"environ": {}, **kwargs})


def test_a_settings_file_that_is_not_tables_fails_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: 3\n")
    with pytest.raises(SettingsError, match=r"bad\.yaml: 'train' must be a table"):
        load_settings(files=[bad], environ={})
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"[train\n\xff")
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(files=[broken], environ={})


def test_every_field_has_a_meaning_and_a_variable_derived_from_its_name() -> None:
    fields = setting_fields()
    assert all(f.help for f in fields)
    keys = {f.key for f in fields}
    assert {"train.finetune_epochs", "train.base_weights", "gate.body_part_auc_floor", "data.eval_fraction"} <= keys
    assert {f.variable for f in fields} >= {"MURA_TRAIN_FINETUNE_EPOCHS", "MURA_GATE_BODY_PART_AUC_FLOOR"}
    assert len({f.variable for f in fields}) == len(fields)
    assert len([f for f in fields if f.section == "train"]) == len(TrainConfig.__dataclass_fields__)


def test_the_cli_takes_flags_set_files_and_environment_alike(tmp_path: Path) -> None:
    settings_file = tmp_path / "s.toml"
    settings_file.write_text("[train]\nhead_epochs = 4\n")
    result = CliRunner().invoke(
        main,
        ["settings", "--profile", "smoke", "--settings", str(settings_file), "--set", "train.finetune_epochs=2"],
        env={"MURA_GATE_AUC_FLOOR": "0.75"},
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[4:] if line.strip()}
    assert rows["train.finetune_epochs"] == "2" and rows["train.head_epochs"] == "4"
    assert rows["gate.auc_floor"] == "0.75" and rows["train.image_size"] == str(PROFILES["smoke"].image_size)
    bad = CliRunner().invoke(main, ["pipeline", "run", "--set", "gate.auc_flor=0.9"])
    assert bad.exit_code == 2 and "did you mean gate.auc_floor" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_setting_round_trips_through_json_and_through_text(profile: str) -> None:
    """What `mura kfp compile` records and `mura settings` prints can be read back as the same settings."""
    settings = load_settings(profile, environ={}, overrides={"gate.body_part_auc_floor": "0.6"})
    fields = setting_fields(settings)
    as_json = json.loads(json.dumps({f.key: f.default for f in fields}))
    assert load_settings(profile, environ={}, overrides=as_json) == settings
    as_text = {f.key: format_value(f.default) for f in fields}
    assert load_settings(profile, environ={}, overrides=as_text) == settings
