"""What a pipeline run recorded and what its model answers, read back here without the project's own scoring code.

Artifacts are found through ML Metadata (never by TFX's folder layout); the test images go, as encoded bytes, through
the trained model's public `serving_default` signature. Tests check the pipeline's figures against these.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

import ml_metadata as mlmd
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from analysis.metadata import latest_execution, open_store, outputs_of, property_value
from analysis.run_outputs import find_run_outputs

RAW_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "body_part": tf.io.FixedLenFeature([], tf.string),
    "study_id": tf.io.FixedLenFeature([], tf.string),
    "source_path": tf.io.FixedLenFeature([], tf.string),
}


@dataclass(frozen=True)
class ServedImage:
    source_path: str
    study_id: str
    body_part: str
    label: int
    probability: float
    abnormal: int  # the model's own verdict
    threshold: float  # the threshold the model says it applies
    uncalibrated_probability: float  # the network's own, before the model's calibration


def completed(store: mlmd.MetadataStore, component: str) -> list[metadata_store_pb2.Execution]:
    """A component's executions that ran to completion (not cache hits), oldest first."""
    executions = [
        e
        for e in store.get_executions()
        if e.type.rsplit(".", 1)[-1] == component and e.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    return sorted(executions, key=lambda e: e.id)


def raw_examples(examples_uri: str, split: str) -> list[dict[str, tf.Tensor]]:
    """One split of an Examples artifact: gzipped TFRecords of tf.Example under Split-<name>/."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    assert files, f"no {split} examples under {examples_uri}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.io.parse_single_example(record, RAW_FEATURES) for record in dataset]


@functools.cache
def serve(model_dir: str, examples_uri: str, split: str = "test") -> tuple[ServedImage, ...]:
    """Every image of `split`, as encoded bytes, through `serving_default` (in batches of 64, like the evaluators)."""
    predict = tf.saved_model.load(model_dir).signatures["serving_default"]
    records = raw_examples(examples_uri, split)
    served = []
    for start in range(0, len(records), 64):
        batch = records[start : start + 64]
        answer = predict(images=tf.stack([r["image"] for r in batch]))
        names = ("probability", "abnormal", "threshold", "uncalibrated_probability")
        outputs = (answer[name].numpy() for name in names)
        for record, probability, abnormal, threshold, uncalibrated in zip(batch, *outputs, strict=True):
            served.append(
                ServedImage(
                    source_path=record["source_path"].numpy().decode(),
                    study_id=record["study_id"].numpy().decode(),
                    body_part=record["body_part"].numpy().decode(),
                    label=int(record["label"]),
                    probability=float(probability),
                    abnormal=int(abnormal),
                    threshold=float(threshold),
                    uncalibrated_probability=float(uncalibrated),
                )
            )
    return tuple(served)


def served_test_images(metadata_path: str) -> tuple[ServedImage, ...]:
    """A run's trained model on its raw test split, both found through ML Metadata."""
    outputs = find_run_outputs(metadata_path).require("model", "examples")
    return serve(outputs.serving_model, outputs.examples)


def latest_trainer(metadata_path: str) -> tuple[dict[str, object], str]:
    """The `train` section the latest completed Trainer ran with, as ML Metadata recorded its custom_config, and
    its ModelRun folder (TensorBoard logs)."""
    store = open_store(metadata_path)
    trainer = latest_execution(store, "Trainer")
    assert trainer is not None, f"no completed Trainer in {metadata_path}"
    config = json.loads(property_value(trainer.custom_properties, "custom_config"))["train"]
    return config, outputs_of(store, trainer)["ModelRun"].uri


def trained_epochs(model_run: str) -> int:
    """Epochs the model was trained for, from the Keras TensorBoard callback's log of the training loss."""
    epochs = set()
    for path in tf.io.gfile.glob(os.path.join(model_run, "train", "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            epochs |= {event.step for value in event.summary.value if value.tag == "epoch_loss"}
    return len(epochs)
