"""Runs the whole pipeline locally with Beam and reads back what a user wants to know: the study-level table,
TFMA's image-level table, and where the model went (or why it did not)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components.study_evaluator import METRICS_JSON, PREDICTIONS_CSV
from mura.config import DataConfig, GateConfig, RunConfig, TrainConfig
from pipeline.definition import create_pipeline
from pipeline.run_outputs import find_run_outputs
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
    outputs = find_run_outputs(run.metadata).require("evaluation", "study_evaluation", "pushed_model")
    with tf.io.gfile.GFile(os.path.join(outputs.study_evaluation, METRICS_JSON)) as handle:
        report = json.load(handle)
    return PipelineSummary(
        table=report["rows"],
        kappa_floor=report["kappa_floor"],
        blessed=report["blessed"],
        image_table=image_table(outputs.evaluation),
        tfma_failures=failures(outputs.evaluation),
        pushed_to=outputs.pushed_to,
        metrics_dir=outputs.study_evaluation,
        evaluation_dir=outputs.evaluation,
    )
