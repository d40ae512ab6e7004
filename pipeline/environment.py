"""The runners' settings (`tfx` CLI, Kubeflow compile) from environment variables or a settings file.

`tfx pipeline create` and `tfx run create` run `pipeline/local_runner.py` with no arguments of its own, so it
reads `MURA_*` variables; `MURA_SETTINGS` may name a file of `KEY=VALUE` lines with the same keys (the
environment wins over the file). Every default is below, and `mura.config` holds the rest.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from mura.config import DIRECT_RUNNER_ARGS, PROFILES, GateConfig, RunConfig, TrainConfig
from mura.filesystem import absolute

SETTINGS_FILE = "MURA_SETTINGS"
# name: (default, meaning)
VARIABLES = {
    "MURA_DATA_ROOT": ("data", "the folder that holds MURA-v1.1/ (a local path or a URI)"),
    "MURA_PROFILE": ("demo", f"training settings: one of {', '.join(sorted(PROFILES))}"),
    "MURA_PIPELINE_NAME": ("mura", "the pipeline's name in TFX and ML Metadata"),
    "MURA_PIPELINE_ROOT": ("runs/pipeline", "TFX artifacts"),
    "MURA_METADATA_PATH": ("", "ML Metadata SQLite file; empty: <pipeline root>/metadata.sqlite"),
    "MURA_SERVING_ROOT": ("", "where blessed models are pushed; empty: <pipeline root>/serving"),
    "MURA_MODEL_NAME": (GateConfig().model_name, "the folder under the serving root, TF Serving's model name"),
    "MURA_BEAM_ARGS": (" ".join(DIRECT_RUNNER_ARGS), "Beam pipeline arguments, shell-quoted"),
    "MURA_KAPPA_FLOOR": (str(GateConfig().study_kappa_floor), "overall study kappa must be above it"),
    "MURA_AUC_FLOOR": (str(GateConfig().auc_floor), "overall image AUC must reach it"),
    "MURA_AUC_MIN_CHANGE": (str(GateConfig().auc_min_change), "candidate AUC minus the baseline's must reach it"),
}


@dataclass(frozen=True)
class Settings:
    run: RunConfig
    train: TrainConfig
    gate: GateConfig


def _read_file(path: str) -> dict[str, str]:
    values = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, separator, value = line.partition("=")
            if not separator or key.strip() not in VARIABLES:
                raise ValueError(f"{path}:{number}: expected KEY=VALUE with KEY one of {', '.join(VARIABLES)}")
            values[key.strip()] = value.strip()
    return values


def settings(environ: Mapping[str, str] = os.environ) -> Settings:
    values = {name: default for name, (default, _) in VARIABLES.items()}
    if environ.get(SETTINGS_FILE):
        values.update(_read_file(environ[SETTINGS_FILE]))
    values.update({name: environ[name] for name in VARIABLES if name in environ})
    profile = values["MURA_PROFILE"]
    if profile not in PROFILES:
        raise ValueError(f"MURA_PROFILE must be one of {', '.join(sorted(PROFILES))}, got {profile!r}")
    run = RunConfig(
        data_root=absolute(values["MURA_DATA_ROOT"]),
        pipeline_root=absolute(values["MURA_PIPELINE_ROOT"]),
        pipeline_name=values["MURA_PIPELINE_NAME"],
        metadata_path=absolute(values["MURA_METADATA_PATH"]),
        serving_root=absolute(values["MURA_SERVING_ROOT"]),
        beam_pipeline_args=tuple(shlex.split(values["MURA_BEAM_ARGS"])),
    )
    gate = GateConfig(
        study_kappa_floor=float(values["MURA_KAPPA_FLOOR"]),
        auc_floor=float(values["MURA_AUC_FLOOR"]),
        auc_min_change=float(values["MURA_AUC_MIN_CHANGE"]),
        model_name=values["MURA_MODEL_NAME"],
    )
    return Settings(run, PROFILES[profile], gate)
