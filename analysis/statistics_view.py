"""The run's data statistics and anomalies as tables, for the data-validation notebook's static views.

TFDV's own views need a browser with internet access (Facets); these tables read the same protos and render
anywhere, including in an exported notebook.
"""

from __future__ import annotations

import os

import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from analysis.summaries import read_ingestion_summary
from components.data_validation_gate import ANOMALIES_FILE, describe_anomalies

SPLITS = ("train", "eval", "test")
STATISTICS_FILE = "FeatureStats.pb"  # StatisticsGen's file per split
SCHEMA_FILE = "schema.pbtxt"  # ImportSchemaGen's file


def split_statistics(statistics_dir: str) -> dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    return {
        split: tfdv.load_stats_binary(os.path.join(statistics_dir, f"Split-{split}", STATISTICS_FILE))
        for split in SPLITS
    }


def split_anomalies(anomalies_dir: str) -> dict[str, anomalies_pb2.Anomalies]:
    return {
        split: load_anomalies_binary(os.path.join(anomalies_dir, f"Split-{split}", ANOMALIES_FILE)) for split in SPLITS
    }


def schema(schema_dir: str) -> schema_pb2.Schema:
    return tfdv.load_schema_text(os.path.join(schema_dir, SCHEMA_FILE))


def drift_table(metadata_path: str) -> pd.DataFrame:
    """The data-validation gate's train/test drift per feature, against the schema's thresholds."""
    return pd.DataFrame(read_ingestion_summary(metadata_path).drift)


def _features(
    statistics: statistics_pb2.DatasetFeatureStatisticsList,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {".".join(f.path.step): f for f in statistics.datasets[0].features}


def feature_table(statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList]) -> pd.DataFrame:
    """One row per (feature, split): how many examples have it, and its range or number of distinct values."""
    rows = []
    for split, stats in statistics.items():
        total = stats.datasets[0].num_examples
        for name, feature in sorted(_features(stats).items()):
            kind = feature.WhichOneof("stats")
            common = getattr(feature, kind).common_stats
            row = {"feature": name, "split": split, "examples": total, "missing": common.num_missing}
            if kind == "num_stats":
                row.update(mean=feature.num_stats.mean, min=feature.num_stats.min, max=feature.num_stats.max)
            elif kind == "string_stats":
                row.update(distinct=feature.string_stats.unique)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["feature", "split"])


def value_counts(statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList], feature: str) -> dict[str, dict]:
    """A categorical feature's value -> count per split (from TFDV's top values)."""
    counts = {}
    for split, stats in statistics.items():
        found = _features(stats).get(feature)
        if found is None or found.WhichOneof("stats") != "string_stats":
            raise KeyError(f"{feature} has no categorical statistics in split {split}")
        counts[split] = {v.value: v.frequency for v in found.string_stats.top_values}
    return counts


def anomaly_table(anomalies: dict[str, anomalies_pb2.Anomalies]) -> pd.DataFrame:
    rows = [
        {"split": split, "anomaly": line} for split, found in anomalies.items() for line in describe_anomalies(found)
    ]
    return pd.DataFrame(rows or [{"split": "all", "anomaly": "none"}])
