"""The values the pipeline's components take from the settings, and which of them a compiled Kubeflow package
exposes as run parameters.

Each run parameter is a function of the settings, so a run changes it through the same fields as every other
source: `mura kfp submit --param gate.auc_floor=0.8` loads the settings with that override and sends every run
parameter it changes. Locally the same functions give the components plain values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from tfx.orchestration.data_types import RuntimeParameter

from mura.config import Settings
from mura.settings import setting_fields
from pipeline.eval_config import eval_config

# Transform resizes every image to this size before the Trainer reads them: a run cannot change it alone.
COMPILE_TIME = frozenset({"train.image_size"})


@dataclass(frozen=True)
class RunParameter:
    name: str  # the pipeline parameter's name in the compiled package (and KFP's UI)
    keys: tuple[str, ...]  # the settings it is made of
    value: Callable[[Settings], Any]  # what the component takes, locally

    def default(self, settings: Settings) -> str | int | float:
        """The value as KFP carries it: scalars as they are, messages and dicts as JSON."""
        value = self.value(settings)
        if isinstance(value, Message):
            value = json_format.MessageToDict(value)
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        return value


def _keys(section: str, leave_out: frozenset[str] = frozenset()) -> tuple[str, ...]:
    return tuple(f.key for f in setting_fields() if f.section == section and f.key not in leave_out)


# The gate's settings the StudyEvaluator takes; the rest of the gate section is TFMA's config.
_STUDY_GATE = (
    RunParameter("kappa_floor", ("gate.study_kappa_floor",), lambda s: s.gate.study_kappa_floor),
    RunParameter("bootstrap_samples", ("gate.bootstrap_samples",), lambda s: s.gate.bootstrap_samples),
    RunParameter("bootstrap_seed", ("gate.bootstrap_seed",), lambda s: s.gate.bootstrap_seed),
    # KFP's run parameters are numbers or strings: the switch travels as 0 or 1.
    RunParameter("gate_on_lower_bound", ("gate.gate_on_lower_bound",), lambda s: int(s.gate.gate_on_lower_bound)),
)
_TFMA_GATE = _keys("gate", leave_out=frozenset(key for parameter in _STUDY_GATE for key in parameter.keys))

PARAMETERS = (
    RunParameter("data_root", ("run.data_root",), lambda s: s.run.data_root),
    RunParameter("serving_root", ("run.serving_root",), lambda s: s.run.serving),
    RunParameter("eval_fraction", ("data.eval_fraction",), lambda s: s.data.eval_fraction),
    RunParameter("split_salt", ("data.split_salt",), lambda s: s.data.split_salt),
    RunParameter("max_rejected_fraction", ("data.max_rejected_fraction",), lambda s: s.data.max_rejected_fraction),
    *_STUDY_GATE,
    RunParameter("train", _keys("train", COMPILE_TIME), lambda s: {"train": dataclasses.asdict(s.train)}),
    RunParameter("tfma_eval_config", (*_TFMA_GATE, "train.threshold"), lambda s: eval_config(s.train, s.gate)),
)
BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}
RUN_KEYS = frozenset(key for parameter in PARAMETERS for key in parameter.keys)


class PipelineValues:
    """What each component is given: plain values for local runs, KFP run parameters (their defaults the same
    values) when compiling for Kubeflow."""

    def __init__(self, settings: Settings, runtime: bool = False) -> None:
        self.settings, self.runtime = settings, runtime

    def __getitem__(self, name: str) -> Any:
        parameter = BY_NAME[name]
        if not self.runtime:
            return parameter.value(self.settings)
        default = parameter.default(self.settings)
        return RuntimeParameter(name=name, ptype=type(default), default=default)


def run_arguments(package_defaults: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The run parameters whose value under `settings` differs from the package's default."""
    return {
        p.name: p.default(settings)
        for p in PARAMETERS
        if p.name in package_defaults and p.default(settings) != package_defaults[p.name]
    }
