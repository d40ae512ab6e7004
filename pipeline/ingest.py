"""Runs only the ingestion part of the pipeline locally, for a new data drop: is it fit to train on?"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import tensorflow as tf
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components.artifacts import DataValidationReport, RejectedImages
from components.data_validation_gate import REPORT_FILE
from components.mura_example_gen.executor import REPORT_FILE as REJECTED_FILE
from mura.config import DataConfig, RunConfig
from mura.splits import PIPELINE_SPLITS
from pipeline.definition import create_ingestion_pipeline
from pipeline.metadata import latest_execution, open_store, outputs_of, property_value


@dataclass
class IngestionSummary:
    image_rows: int
    rejected_images: int
    split_images: dict[str, int]
    examples_uri: str
    rejected_report: str
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    drift: list[dict[str, object]] = field(default_factory=list)


def run_ingestion(run: RunConfig, data: DataConfig) -> IngestionSummary:
    """Raises DataQualityError (too many rejected, empty split, anomalies) or MuraLayoutError (not MURA)."""
    BeamDagRunner().run(create_ingestion_pipeline(run, data))
    return read_ingestion_summary(run.metadata)


def read_ingestion_summary(metadata_path: str) -> IngestionSummary:
    store = open_store(metadata_path)
    execution = latest_execution(store, "MuraExampleGen")
    if execution is None:
        raise LookupError(f"no completed ingestion recorded in {metadata_path}")
    outputs = outputs_of(store, execution)
    examples, rejected = outputs["Examples"], outputs[RejectedImages.TYPE_NAME]
    gate = latest_execution(store, "DataValidationGate")
    report = outputs_of(store, gate)[DataValidationReport.TYPE_NAME] if gate else None
    props = execution.custom_properties
    summary = IngestionSummary(
        image_rows=int(property_value(props, "image_rows") or 0),
        rejected_images=int(property_value(props, "rejected_images") or 0),
        split_images={split: int(property_value(props, f"{split}_images") or 0) for split in PIPELINE_SPLITS},
        examples_uri=examples.uri,
        rejected_report=os.path.join(rejected.uri, REJECTED_FILE),
    )
    if report is not None:
        with tf.io.gfile.GFile(os.path.join(report.uri, REPORT_FILE)) as handle:
            content = json.load(handle)
        summary.anomalies, summary.drift = content["anomalies"], content["drift"]
    return summary
