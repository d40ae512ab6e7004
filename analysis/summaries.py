"""What a user wants to know after a run, read from its ML Metadata: the ingestion's counts, anomalies and drift;
the study-level and TFMA tables; and where the model went, or why it did not."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import tensorflow as tf

from analysis.metadata import open_store, producer, property_value
from analysis.run_outputs import find_run_outputs
from analysis.tfma_results import image_table
from components.data_validation_gate import REPORT_FILE
from components.mura_example_gen.executor import REPORT_FILE as REJECTED_FILE
from components.study_evaluator import PREDICTIONS_CSV, read_study_report
from components.tfma_gate import failures
from mura.model_card import CARD_HTML
from mura.splits import PIPELINE_SPLITS
from mura.study_gate import GateDecision


@dataclass
class IngestionSummary:
    image_rows: int
    rejected_images: int
    split_images: dict[str, int]
    examples_uri: str
    rejected_report: str
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    drift: list[dict[str, object]] = field(default_factory=list)


def read_ingestion_summary(metadata_path: str) -> IngestionSummary:
    """The newest run that ingested and validated; the counts from the execution that wrote its examples (a cache
    hit records no counts)."""
    outputs = find_run_outputs(metadata_path, needs=("examples", "data_report"))
    if outputs.examples is None:
        raise LookupError(f"no completed ingestion recorded in {metadata_path}")
    props = producer(open_store(metadata_path), outputs.artifacts["examples"]).custom_properties
    summary = IngestionSummary(
        image_rows=int(property_value(props, "image_rows") or 0),
        rejected_images=int(property_value(props, "rejected_images") or 0),
        split_images={split: int(property_value(props, f"{split}_images") or 0) for split in PIPELINE_SPLITS},
        examples_uri=outputs.examples,
        rejected_report=os.path.join(outputs.rejected, REJECTED_FILE),
    )
    if outputs.data_report is not None:
        with tf.io.gfile.GFile(os.path.join(outputs.data_report, REPORT_FILE)) as handle:
            content = json.load(handle)
        summary.anomalies, summary.drift = content["anomalies"], content["drift"]
    return summary


@dataclass
class PipelineSummary:
    table: list[dict[str, object]]  # study level: one row per body part, then "overall", with 95 % intervals
    bootstrap_samples: int  # behind each interval; 0: no intervals
    kappa_floor: float
    blessed: bool  # by the study-level kappa floor
    gate_figure: str  # what the floor was held against: the overall kappa's "point" or "lower bound"
    gate_kappa: float  # and its value
    image_table: list[dict[str, object]]  # TFMA, image level: one row per body part, then "overall"
    tfma_failures: list[str]  # TFMA's failed thresholds; empty when it blessed the model
    pushed_to: str  # empty when not pushed
    metrics_dir: str
    evaluation_dir: str  # TFMA's output, for notebooks
    model_card: str = ""  # the card's page: the pushed version's, else the candidate's; empty: none

    @property
    def official_predictions(self) -> str:
        return os.path.join(self.metrics_dir, PREDICTIONS_CSV)

    @property
    def study_gate(self) -> GateDecision:
        return GateDecision(self.blessed, self.gate_figure, self.gate_kappa, self.kappa_floor)


def read_pipeline_summary(metadata_path: str) -> PipelineSummary:
    outputs = find_run_outputs(metadata_path).require("evaluation", "study_evaluation", "pushed_model")
    report = read_study_report(outputs.study_evaluation)
    gate = GateDecision.from_report(report)
    return PipelineSummary(
        table=report["rows"],
        bootstrap_samples=report.get("bootstrap_samples", 0),  # none before intervals were reported
        kappa_floor=gate.floor,
        blessed=gate.blessed,
        gate_figure=gate.figure,
        gate_kappa=gate.kappa,
        image_table=image_table(outputs.evaluation),
        tfma_failures=failures(outputs.evaluation),
        pushed_to=outputs.pushed_to,
        metrics_dir=outputs.study_evaluation,
        evaluation_dir=outputs.evaluation,
        model_card=os.path.join(outputs.card_dir, CARD_HTML) if outputs.card_dir else "",
    )
