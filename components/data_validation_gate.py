"""Turns ExampleValidator's anomalies into a failed run, and measures train/test drift.

TFX 1.16's ExampleValidator only records anomalies; without this gate, Transform and Trainer would go on
training on data that broke the schema. Transform depends on the gate, so a run with anomalies stops here, with
a message that names them.
"""

import json
import os

import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as example_validator
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema
from tfx.utils import io_utils

from components.artifacts import DataValidationReport
from components.report_files import failure_report_path
from mura.quality import DataQualityError

REPORT_FILE = "report.json"
ANOMALIES_FILE = example_validator.DEFAULT_FILE_NAME  # ExampleValidator's file per split (SchemaDiff.pb)
DRIFT_BASELINE, DRIFT_TARGET = "train", "test"


def describe_anomalies(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One readable line per anomaly: which feature, what is wrong."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(r.description or r.short_description for r in info.reason)
        lines.append(f"feature '{feature}': {reasons or info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append("dataset: " + "; ".join(r.description or r.short_description for r in info.reason))
    return lines


def measure_drift(baseline, target, schema) -> "list[dict[str, object]]":
    """The schema's drift comparators (L-infinity on body part and label) between two splits' statistics."""
    result = tfdv.validate_statistics(statistics=target, schema=schema, previous_statistics=baseline)
    return [
        {
            "feature": ".".join(info.path.step),
            "distance": round(m.value, 4),
            "threshold": m.threshold,
            "exceeded": m.value > m.threshold,
        }
        for info in result.drift_skew_info
        for m in info.drift_measurements
    ]


@component
def DataValidationGate(
    statistics: InputArtifact[ExampleStatistics],
    schema: InputArtifact[Schema],
    anomalies: InputArtifact[ExampleAnomalies],
    report: OutputArtifact[DataValidationReport],
    drift_is_fatal: Parameter[bool] = False,
) -> None:
    """Fails the run on any schema anomaly; reports train-vs-test drift (fatal only when asked)."""
    found: dict[str, list[str]] = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        found[split] = describe_anomalies(load_anomalies_binary(path))

    schema_proto = tfdv.load_schema_text(io_utils.get_only_uri_in_dir(schema.uri))
    splits = artifact_utils.decode_split_names(statistics.split_names)
    drift = []
    if DRIFT_BASELINE in splits and DRIFT_TARGET in splits:
        drift = measure_drift(
            stats_artifact_utils.load_statistics(statistics, DRIFT_BASELINE).proto(),
            stats_artifact_utils.load_statistics(statistics, DRIFT_TARGET).proto(),
            schema_proto,
        )
    for d in drift:
        if d["exceeded"]:
            logging.warning("Drift %s vs %s on %s: %s", DRIFT_BASELINE, DRIFT_TARGET, d["feature"], d["distance"])

    failures = [f"split '{split}': {line}" for split, lines in found.items() for line in lines]
    if drift_is_fatal:
        failures += [
            f"drift {DRIFT_BASELINE} vs {DRIFT_TARGET} on '{d['feature']}': "
            f"L-infinity {d['distance']} > {d['threshold']}"
            for d in drift
            if d["exceeded"]
        ]
    report.set_int_custom_property("anomalies", sum(len(lines) for lines in found.values()))
    report.set_int_custom_property("drift_exceeded", sum(1 for d in drift if d["exceeded"]))
    content = json.dumps({"anomalies": found, "drift": drift}, indent=2)
    report_path = os.path.join(report.uri, REPORT_FILE)
    if failures:
        report_path = failure_report_path(report.uri, REPORT_FILE)
    io_utils.write_string_file(report_path, content)
    if failures:
        raise DataQualityError(
            "Data validation failed; Transform and Trainer will not run.\n  "
            + "\n  ".join(failures)
            + f"\nFull report: {report_path}"
        )
