"""Runs the whole pipeline locally with Beam and reads back what a user wants to know: the study-level table
and where the model went (or why it did not)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components.study_evaluator import METRICS_JSON, PREDICTIONS_CSV
from mura.config import DataConfig, GateConfig, RunConfig, TrainConfig
from pipeline.metadata import latest_execution, open_store, outputs_of, property_value
from pipeline.pipeline import create_pipeline


@dataclass
class PipelineSummary:
    table: list[dict[str, object]]  # one row per body part, then "overall"
    kappa_floor: float
    blessed: bool
    pushed_to: str  # empty when not pushed
    metrics_dir: str

    @property
    def official_predictions(self) -> str:
        return os.path.join(self.metrics_dir, PREDICTIONS_CSV)


def run_pipeline(run: RunConfig, data: DataConfig, train: TrainConfig, gate: GateConfig) -> PipelineSummary:
    BeamDagRunner().run(create_pipeline(run, data, train, gate))
    store = open_store(run.metadata)
    evaluator, pusher = latest_execution(store, "StudyEvaluator"), latest_execution(store, "VersionedPusher")
    if evaluator is None or pusher is None:
        raise LookupError(f"the run recorded no study evaluation or push in {run.metadata}")
    evaluation = outputs_of(store, evaluator)["MuraStudyEvaluation"]
    pushed = outputs_of(store, pusher)["PushedModel"]
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_JSON)) as handle:
        report = json.load(handle)
    return PipelineSummary(
        table=report["rows"],
        kappa_floor=report["kappa_floor"],
        blessed=report["blessed"],
        pushed_to=str(property_value(pushed.custom_properties, "pushed_destination") or ""),
        metrics_dir=evaluation.uri,
    )
