"""The run's data statistics, schema and anomalies as tables, for the data-validation notebook's static views.

TFDV's statistics view needs a browser with internet access (Facets); these tables read the same protos and render
anywhere, including in an exported notebook. Schema and anomalies tables are TFDV's own (`display_util`).
"""

from __future__ import annotations

import os

import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
from tensorflow_data_validation.utils.display_util import get_anomalies_dataframe
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.components.statistics_gen.stats_artifact_utils import load_statistics
from tfx.utils import io_utils

from analysis.run_outputs import RunOutputs
from analysis.summaries import read_ingestion_summary
from components.data_validation_gate import ANOMALIES_FILE


def split_statistics(outputs: RunOutputs) -> dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    """StatisticsGen's statistics per split, in the order it recorded the splits."""
    artifact = outputs.artifacts["statistics"]
    return {split: load_statistics(artifact, split).proto() for split in outputs.splits("statistics")}


def split_anomalies(outputs: RunOutputs) -> dict[str, anomalies_pb2.Anomalies]:
    """ExampleValidator's anomalies per split."""
    return {
        split: load_anomalies_binary(os.path.join(outputs.split_uri("anomalies", split), ANOMALIES_FILE))
        for split in outputs.splits("anomalies")
    }


def schema(outputs: RunOutputs) -> schema_pb2.Schema:
    """The schema the run validated against, read as TFX's components read it (the one file in the artifact)."""
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(outputs.schema))


def drift_table(metadata_path: str) -> pd.DataFrame:
    """The data-validation gate's train/test drift per feature, against the schema's thresholds."""
    return pd.DataFrame(read_ingestion_summary(metadata_path).drift)


def feature_table(statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList]) -> pd.DataFrame:
    """One row per (feature, split): how many examples have it, and its range or number of distinct values.

    By hand on TFDV's statistics views: TFDV renders feature statistics only as Facets HTML, not as a table."""
    rows = []
    for split, stats in statistics.items():
        dataset = tfdv.DatasetListView(stats).get_default_slice_or_die()
        total = dataset.proto().num_examples
        for path in sorted(dataset.list_features()):
            feature = dataset.get_feature(path)
            row = {"feature": str(path), "split": split, "examples": total}
            row["missing"] = feature.common_statistics().num_missing
            if numeric := feature.numeric_statistics():
                row.update(mean=numeric.mean, min=numeric.min, max=numeric.max)
            elif strings := feature.string_statistics():
                row.update(distinct=strings.unique)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["feature", "split"])


def value_counts(statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList], feature: str) -> dict[str, dict]:
    """A categorical feature's value -> count per split (from TFDV's top values)."""
    counts = {}
    for split, stats in statistics.items():
        found = tfdv.DatasetListView(stats).get_default_slice_or_die().get_feature(feature)
        strings = found and found.string_statistics()
        if not strings:
            raise KeyError(f"{feature} has no categorical statistics in split {split}")
        counts[split] = {v.value: v.frequency for v in strings.top_values}
    return counts


def anomaly_table(anomalies: dict[str, anomalies_pb2.Anomalies]) -> pd.DataFrame:
    """TFDV's anomalies table (feature, short and long description) per split; one "none" row when all are clean."""
    tables = {split: get_anomalies_dataframe(found) for split, found in anomalies.items()}
    found = {split: table for split, table in tables.items() if not table.empty}
    if not found:
        return pd.DataFrame([{"split": "all", "anomaly": "none"}])
    return pd.concat(found, names=["split"])
