"""Runs the whole pipeline locally with Beam and reads back what a user wants to know: the study-level table,
TFMA's image-level table, and where the model went (or why it did not)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components.artifacts import StudyEvaluation
from components.study_evaluator import METRICS_JSON, PREDICTIONS_CSV
from mura.config import DataConfig, GateConfig, RunConfig, TrainConfig
from pipeline.definition import create_pipeline
from pipeline.metadata import latest_execution, open_store, outputs_of, property_value
from pipeline.tfma_results import failures, image_table


@dataclass
class PipelineSummary:
    table: list[dict[str, object]]  # study level: one row per body part, then "overall"
    kappa_floor: float
    blessed: bool  # by the study-level kappa floor
    image_table: list[dict[str, object]]  # TFMA, image level: one row per body part, then "overall"
    tfma_failures: list[str]  # TFMA's failed thresholds; empty when it blessed the model
    pushed_to: str  # empty when not pushed
    metrics_dir: str
    evaluation_dir: str  # TFMA's output, for notebooks

    @property
    def official_predictions(self) -> str:
        return os.path.join(self.metrics_dir, PREDICTIONS_CSV)


def run_pipeline(run: RunConfig, data: DataConfig, train: TrainConfig, gate: GateConfig) -> PipelineSummary:
    BeamDagRunner().run(create_pipeline(run, data, train, gate))
    store = open_store(run.metadata)
    executions = {name: latest_execution(store, name) for name in ("Evaluator", "StudyEvaluator", "VersionedPusher")}
    missing = [name for name, execution in executions.items() if execution is None]
    if missing:
        raise LookupError(f"the run recorded no {', '.join(missing)} execution in {run.metadata}")
    tfma_evaluation = outputs_of(store, executions["Evaluator"])["ModelEvaluation"]
    evaluation = outputs_of(store, executions["StudyEvaluator"])[StudyEvaluation.TYPE_NAME]
    pushed = outputs_of(store, executions["VersionedPusher"])["PushedModel"]
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_JSON)) as handle:
        report = json.load(handle)
    return PipelineSummary(
        table=report["rows"],
        kappa_floor=report["kappa_floor"],
        blessed=report["blessed"],
        image_table=image_table(tfma_evaluation.uri),
        tfma_failures=failures(tfma_evaluation.uri),
        pushed_to=str(property_value(pushed.custom_properties, "pushed_destination") or ""),
        metrics_dir=evaluation.uri,
        evaluation_dir=tfma_evaluation.uri,
    )
