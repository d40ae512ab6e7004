"""Do the images a server is asked about still look like the ones its model was trained on? (`mura drift`)

Both sides are described the same way (`mura.image_profile`: size, channels, intensities, and the body part when
requests give it), summarised by TFDV, and compared by TFDV's skew comparators (training vs serving): the
Jensen-Shannon divergence for numeric features, the L-infinity distance for categorical ones, against the
thresholds of a schema (a curated one, or one inferred from the training side with the settings' thresholds).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.utils import io_utils

from analysis.figures import drift_figure
from analysis.pages import PAGES
from mura import features
from mura.config import DriftConfig
from mura.image_profile import CATEGORICAL, NUMERIC, image_profile
from mura.tables import html_table

TRAIN_SAMPLE_SEED = 0
Image = tuple[bytes, str]  # encoded bytes, and the body part ("" when not known)
_COMPARATORS = {
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence",
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity distance",
}


class DriftCheckError(ValueError):
    """The check cannot judge: too few images, or none that decode."""


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    comparator: str
    value: float
    threshold: float
    anomaly: str = ""  # TFDV's description when the feature is out of bounds (above its threshold, or off-schema)

    @property
    def drifted(self) -> bool:
        return bool(self.anomaly)


@dataclass
class DriftCheck:
    features: list[FeatureDrift]
    anomalies: dict[str, str]  # feature -> TFDV's description, comparators' and the schema's alike
    training_images: int
    served_images: int
    undecodable: int  # logged images that do not decode: not counted in the served statistics
    training_frame: pd.DataFrame = field(repr=False)
    served_frame: pd.DataFrame = field(repr=False)
    schema: schema_pb2.Schema = field(repr=False)
    training_statistics: statistics_pb2.DatasetFeatureStatisticsList = field(repr=False)
    served_statistics: statistics_pb2.DatasetFeatureStatisticsList = field(repr=False)
    notes: list[str] = field(default_factory=list)  # what was not compared, and why

    @property
    def drifted(self) -> list[str]:
        return sorted(self.anomalies)


def training_images(examples_split_uri: str, sample: int, seed: int = TRAIN_SAMPLE_SEED) -> list[Image]:
    """A uniform sample of a split's images (reservoir sampling: one pass, only the sample held in memory)."""
    files = tf.io.gfile.glob(io_utils.all_files_pattern(examples_split_uri))
    if not files:
        raise DriftCheckError(f"no examples under {examples_split_uri}")
    spec = {
        features.IMAGE: tf.io.FixedLenFeature([], tf.string),
        features.BODY_PART: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    chooser, kept = random.Random(seed), []
    for seen, record in enumerate(tf.data.TFRecordDataset(files, compression_type="GZIP")):
        slot = seen if seen < sample else chooser.randrange(seen + 1)
        if slot >= sample:
            continue
        example = tf.io.parse_single_example(record, spec)
        image = (example[features.IMAGE].numpy(), example[features.BODY_PART].numpy().decode())
        if slot == len(kept):
            kept.append(image)
        else:
            kept[slot] = image
    return kept


def profile_frame(images: Iterable[Image]) -> tuple[pd.DataFrame, int]:
    """One row per image that decodes (categorical features as text, as TFDV compares categories), and how many
    did not."""
    rows, undecodable = [], 0
    for image, body_part in images:
        try:
            row = image_profile(image)
        except ValueError:
            undecodable += 1
            continue
        rows.append({**row, **{name: str(row[name]) for name in CATEGORICAL}, features.BODY_PART: body_part or None})
    return pd.DataFrame(rows), undecodable


def drift_schema(training: statistics_pb2.DatasetFeatureStatisticsList, config: DriftConfig) -> schema_pb2.Schema:
    """The curated schema when the settings name one; else TFDV's schema of the training side, with a skew
    comparator on every feature at the settings' thresholds. The body part may be missing: requests need not
    give it."""
    if config.schema_file:
        return tfdv.load_schema_text(config.schema_file)
    schema = tfdv.infer_schema(training)
    for feature in schema.feature:
        if feature.type == schema_pb2.BYTES:
            feature.skew_comparator.infinity_norm.threshold = config.categorical_threshold
        else:
            feature.skew_comparator.jensen_shannon_divergence.threshold = config.numeric_threshold
        if feature.name == features.BODY_PART:
            feature.presence.min_fraction = 0.0
    return schema


def check_drift(
    served: Iterable[Image],
    trained: list[Image],
    config: DriftConfig,
    progress: Callable[[Iterable[Image], str], Iterable[Image]] = lambda images, _: images,
) -> DriftCheck:
    """Reads `served` once, keeping only each image's profile (a request log may be larger than memory); raises
    DriftCheckError when fewer than `config.min_requests` served images decode."""
    served_frame, undecodable = profile_frame(progress(served, "served images"))
    if len(served_frame) < config.min_requests:
        raise DriftCheckError(
            f"{len(served_frame)} logged images decode ({undecodable} do not): at least {config.min_requests} are "
            "needed to judge drift (drift.min_requests); log more requests or raise the sampling rate"
        )
    training_frame, _ = profile_frame(progress(trained, "training images"))
    notes = []
    if served_frame[features.BODY_PART].isna().all():
        served_frame = served_frame.drop(columns=features.BODY_PART)
        training_frame = training_frame.drop(columns=features.BODY_PART)
        notes.append("body part: no logged request gave one, so it is not compared")
    training_statistics = tfdv.generate_statistics_from_dataframe(training_frame)
    served_statistics = tfdv.generate_statistics_from_dataframe(served_frame)
    schema = drift_schema(training_statistics, config)
    found = tfdv.validate_statistics(training_statistics, schema, serving_statistics=served_statistics)
    anomalies = {name: info.description for name, info in found.anomaly_info.items()}
    measured = [
        FeatureDrift(
            feature=info.path.step[0],
            comparator=_COMPARATORS[measurement.type],
            value=measurement.value,
            threshold=measurement.threshold,
            anomaly=anomalies.get(info.path.step[0], ""),
        )
        for info in found.drift_skew_info
        for measurement in info.skew_measurements
    ]
    order = [*NUMERIC, *CATEGORICAL, features.BODY_PART]
    measured.sort(key=lambda row: order.index(row.feature) if row.feature in order else len(order))
    return DriftCheck(
        features=measured,
        anomalies=anomalies,
        training_images=len(training_frame),
        served_images=len(served_frame),
        undecodable=undecodable,
        training_frame=training_frame,
        served_frame=served_frame,
        schema=schema,
        training_statistics=training_statistics,
        served_statistics=served_statistics,
        notes=notes,
    )


def summary(check: DriftCheck) -> dict:
    """What `--json` writes and the page shows: the verdict, each comparison, and what was not compared."""
    return {
        "verdict": "drifted" if check.drifted else "no drift",
        "drifted": check.drifted,
        "anomalies": check.anomalies,
        "features": [{**asdict(row), "drifted": row.drifted} for row in check.features],
        "training_images": check.training_images,
        "served_images": check.served_images,
        "undecodable": check.undecodable,
        "notes": check.notes,
    }


FEATURE_COLUMNS = (
    ("feature", "feature"),
    ("comparator", "comparator"),
    ("value", "value"),
    ("threshold", "threshold"),
    ("drifted", "drifted"),
)


def write_drift(check: DriftCheck, out_dir: Path, requests: str, pipeline_root: str) -> Path:
    """`out_dir`/drift.html with the side-by-side figure, and what TFDV computed (statistics, schema, anomalies) for
    `tfdv.visualize_statistics` and friends; returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    measured = {row.feature: (row.value, row.threshold) for row in check.features}
    figure = drift_figure(check.training_frame, check.served_frame, measured, set(check.drifted))
    figure.savefig(out_dir / "drift.png", dpi=100)
    for name, statistics in (("training", check.training_statistics), ("served", check.served_statistics)):
        io_utils.write_bytes_file(str(out_dir / f"{name}_statistics.pb"), statistics.SerializeToString())
    tfdv.write_schema_text(check.schema, str(out_dir / "schema.pbtxt"))
    facts = summary(check)
    (out_dir / "drift.json").write_text(json.dumps(facts, indent=2))
    rows = [
        {**row, "value": f"{row['value']:.3f}", "drifted": "yes" if row["drifted"] else ""} for row in facts["features"]
    ]
    page = out_dir / "drift.html"
    page.write_text(
        PAGES.get_template("drift.html.j2").render(
            facts=facts,
            requests=requests,
            pipeline_root=pipeline_root,
            table=html_table(rows, FEATURE_COLUMNS),
        )
    )
    return page
