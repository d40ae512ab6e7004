"""MuraExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> gate, run for real with Beam."""

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import tensorflow as tf
from click.testing import CliRunner

from analysis.metadata import open_store, outputs_of
from analysis.summaries import IngestionSummary, read_ingestion_summary
from cli.main import main
from mura.config import DataConfig, RunConfig, Settings
from mura.quality import DataQualityError
from mura.reader import read_mura
from pipeline.definition import create_pipeline
from pipeline.run import run_ingestion
from tests.run_records import completed
from tests.trees import png_bytes

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "body_part": tf.io.FixedLenFeature([], tf.string),
    "patient_id": tf.io.FixedLenFeature([], tf.string),
    "study_id": tf.io.FixedLenFeature([], tf.string),
    "image_index": tf.io.FixedLenFeature([], tf.int64),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "channels": tf.io.FixedLenFeature([], tf.int64),
    "source_path": tf.io.FixedLenFeature([], tf.string),
}


def read_split(examples_uri: str, split: str) -> list[dict]:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [{k: v.numpy() for k, v in tf.io.parse_single_example(r, FEATURES).items()} for r in dataset]


def test_examples_hold_every_accepted_image_by_patient_split(pipeline_run, sample_root: Path) -> None:
    run, summary = pipeline_run
    # The summary's examples are the Examples artifact MuraExampleGen's execution wrote, as ML Metadata records it.
    store = open_store(run.metadata)
    [example_gen] = completed(store, "MuraExampleGen")
    examples = outputs_of(store, example_gen)["Examples"]
    assert summary.examples_uri == examples.uri
    assert json.loads(examples.properties["split_names"].string_value) == ["train", "eval", "test"]
    index = read_mura(sample_root, progress=False)
    expected = {r.source_path: r for r in index.images}
    seen, split_of_patient = {}, defaultdict(set)
    for split in ("train", "eval", "test"):
        for example in read_split(summary.examples_uri, split):
            path = example["source_path"].decode()
            record = expected[path]
            assert record.split == split
            assert example["image"] == (sample_root / path).read_bytes()  # the original bytes, not re-encoded
            assert example["label"] == record.label
            assert example["body_part"].decode() == record.body_part
            assert example["study_id"].decode() == record.study_id
            assert (example["height"], example["width"], example["channels"]) == (
                record.height,
                record.width,
                record.channels,
            )
            assert example["image_index"] == record.image_index
            seen[path] = split
            split_of_patient[example["patient_id"]].add(split)
    assert set(seen) == set(expected)
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    counts = {split: sum(1 for s in seen.values() if s == split) for split in ("train", "eval", "test")}
    assert counts == summary.split_images
    assert summary.image_rows == len(expected) and summary.rejected_images == 0
    assert Path(summary.rejected_report).read_text().splitlines() == ["path,reason,detail,csv_file,line"]


def test_validation_found_no_anomaly_and_measured_drift(pipeline_run) -> None:
    _, summary = pipeline_run
    assert summary.anomalies == {"train": [], "eval": [], "test": []}
    assert {d["feature"] for d in summary.drift} == {"body_part", "label"}
    # Train against test, L-infinity between the two splits' value frequencies, as computed here from the examples.
    train, test = read_split(summary.examples_uri, "train"), read_split(summary.examples_uri, "test")
    for drift in summary.drift:
        feature = drift["feature"]
        in_train = Counter(example[feature] for example in train)
        in_test = Counter(example[feature] for example in test)
        expected = max(abs(in_train[v] / len(train) - in_test[v] / len(test)) for v in in_train | in_test)
        assert drift["distance"] == pytest.approx(expected, abs=1e-4), feature
        assert drift["exceeded"] == (expected > drift["threshold"]), feature


def test_the_ingest_command_reports_a_cached_rerun(pipeline_run) -> None:
    run, summary = pipeline_run
    mura = str(Path(sys.executable).parent / "mura")
    result = subprocess.run(
        [mura, "ingest", run.data_root, "--output", run.pipeline_root], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    for split, count in summary.split_images.items():
        assert f"{split:<7}{count:>12}" in result.stdout
    assert f"Rejected: 0 of {summary.image_rows} image rows" in result.stdout
    assert "Anomalies: none" in result.stdout
    store = open_store(run.metadata)
    example_gens = sorted((e for e in store.get_executions() if e.type.endswith("MuraExampleGen")), key=lambda e: e.id)
    assert len(example_gens) >= 2 and example_gens[-1].last_known_state == example_gens[-1].CACHED
    assert len(completed(store, "MuraExampleGen")) == 1  # read once, by the shared run


def ingest(settings: Settings) -> IngestionSummary:
    run_ingestion(settings)
    return read_ingestion_summary(settings.run.metadata)


def corrupt(root: Path, count: int) -> list[str]:
    """Keeps each PNG's header and its IEND chunk and cuts the pixel data between them: the reader, which checks
    only the ends, accepts it; decoding fails."""
    paths = sorted(root.rglob("train/*/*/*/*.png"))[:count]
    for path in paths:
        data = path.read_bytes()
        path.write_bytes(data[:60] + data[-12:])
    return [str(p.relative_to(root)) for p in paths]


@pytest.mark.e2e
def test_corrupt_images_under_the_bound_are_rejected_and_the_run_goes_on(sample_root: Path, tmp_path: Path) -> None:
    shutil.copytree(sample_root, tmp_path / "data")
    [broken] = corrupt(tmp_path / "data", 1)
    run = RunConfig(data_root=str(tmp_path / "data"), pipeline_root=str(tmp_path / "run"))
    summary = ingest(Settings(run=run, data=DataConfig(max_rejected_fraction=0.05)))
    with open(summary.rejected_report) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["reason"]) for r in rows] == [(broken, "undecodable")]
    assert summary.rejected_images == 1
    assert sum(summary.split_images.values()) == summary.image_rows - 1
    in_examples = [
        e["source_path"].decode() for split in ("train", "eval") for e in read_split(summary.examples_uri, split)
    ]
    assert broken not in in_examples


@pytest.mark.e2e
def test_corrupt_images_above_the_bound_fail_the_run_naming_counts_bound_and_report(
    sample_root: Path, tmp_path: Path
) -> None:
    shutil.copytree(sample_root, tmp_path / "data")
    broken = corrupt(tmp_path / "data", 5)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "data"), "--output", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "5 rejected" in result.output and "bound 1.00%): too many rejected" in result.output
    report = result.output.split("Every rejected row and its reason: ")[1].split()[0]
    with open(report) as handle:
        assert sorted(r["path"] for r in csv.DictReader(handle)) == sorted(broken)


@pytest.mark.e2e
def test_an_empty_split_fails_clearly(tmp_path: Path) -> None:
    from tests.trees import Tree

    t = Tree(tmp_path / "data")
    for n in range(1, 4):
        t.labeled_image(f"train/XR_HAND/patient{n:05d}/study1_negative/image1.png")
    result = CliRunner().invoke(
        main, ["ingest", str(t.write()), "--output", str(tmp_path / "run"), "--eval-fraction", "0.5"]
    )
    assert result.exit_code == 1
    assert "split(s)" in result.output and "test" in result.output and "would be empty" in result.output
    assert "Traceback" not in result.output


@pytest.mark.e2e
def test_schema_anomalies_stop_the_run_before_transform_naming_them(sample_root: Path, tmp_path: Path) -> None:
    shutil.copytree(sample_root, tmp_path / "data")
    for path in sorted((tmp_path / "data").rglob("*/*/*/*/image1.png"))[::4]:
        path.write_bytes(png_bytes(10, 10))  # thumbnails: below the schema's 16-pixel minimum
    run = RunConfig(data_root=str(tmp_path / "data"), pipeline_root=str(tmp_path / "run"))
    with pytest.raises(DataQualityError) as raised:
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        BeamDagRunner().run(create_pipeline(Settings(run=run)))
    message = str(raised.value)
    assert "Data validation failed; Transform and Trainer will not run" in message
    assert "feature 'height'" in message and "feature 'width'" in message
    report = json.loads(Path(message.split("Full report: ")[1].split()[0]).read_text())
    assert report["anomalies"]["train"]
    ran = {e.type.rsplit(".", 1)[-1] for e in open_store(run.metadata).get_executions()}
    assert "DataValidationGate" in ran and not ran & {"Transform", "Trainer"}


@pytest.mark.e2e
def test_the_multi_processing_direct_runner_drops_no_record(sample_root: Path, tmp_path: Path) -> None:
    """Beam's DirectRunner on both cores (worker processes): every accepted image is in the TFRecords once."""
    args = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    summary = ingest(Settings(run=RunConfig(data_root=str(sample_root), pipeline_root=str(tmp_path), beam_args=args)))
    index = read_mura(sample_root, progress=False)
    for split in ("train", "eval", "test"):
        paths = [example["source_path"].decode() for example in read_split(summary.examples_uri, split)]
        expected = {r.source_path for r in index.images if r.split == split}
        assert len(paths) == len(set(paths)) == len(expected) == summary.split_images[split], split
        assert set(paths) == expected
