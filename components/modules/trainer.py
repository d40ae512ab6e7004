"""The Trainer's run_fn: tf.data over Transform's output, the two-phase schedule, calibration and operating points
on the eval split, and the serving signatures."""

from __future__ import annotations

import logging as pylogging
import math
import os
import time
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio
from tfx_bsl.tfxio.tensor_representation_util import ProjectTensorRepresentationsInSchema

from components.modules import export, post_training
from mura import features
from mura.calibration import Calibration
from mura.class_weights import class_weights, parse_label_counts
from mura.config import TrainConfig
from mura.devices import choose_placement
from mura.image_ops import parse_pixels
from mura.model import build_model, set_phase
from mura.operating_points import OperatingPoints

PROGRESS_LOGGER = "mura.training"  # EpochProgress's lines: what `mura pipeline run` shows of training
# What the Trainer reads of Transform's output; study_id and source_path are for the evaluators.
TRAINER_FEATURES = (features.PIXELS, features.LABEL, features.BODY_PART)
# fn_args.data_accessor.tf_dataset_factory: (file patterns, options, schema) -> batches of parsed features.
LearningRate = keras.optimizers.schedules.LearningRateSchedule
DatasetFactory = Callable[[list[str], tfxio.TensorFlowDatasetOptions, schema_pb2.Schema], tf.data.Dataset]


def label_counts(tft_output: tft.TFTransformOutput) -> dict[tuple[str, int], int]:
    lines = tft_output.vocabulary_by_name(features.LABEL_COUNTS_VOCABULARY)
    return parse_label_counts([line.decode() for line in lines])


def make_dataset(
    dataset_factory: DatasetFactory,
    file_patterns: list[str],
    schema: schema_pb2.Schema,
    config: TrainConfig,
    weights: dict[tuple[str, int], float],
    batch_size: int,
    training: bool,
) -> tf.data.Dataset:
    """(pixels, label, sample weight) batches through TFX's reader (`fn_args.data_accessor.tf_dataset_factory`):
    Transform's schema parses the features, shuffled and repeated in training; then each batch's serialized
    pixels are parsed and its sample weights looked up, in parallel, prefetched."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant([f"{part}:{label}" for part, label in weights]),
            tf.constant(list(weights.values()), tf.float32),
        ),
        default_value=1.0,
    )
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        num_epochs=None if training and config.steps_per_epoch else 1,
        shuffle=training,
        shuffle_buffer_size=config.shuffle_buffer,
        label_key=features.LABEL,
    )
    dataset = dataset_factory(file_patterns, options, ProjectTensorRepresentationsInSchema(schema, TRAINER_FEATURES))

    def finish(batch: dict[str, tf.Tensor], label: tf.Tensor):
        label = tf.reshape(label, [-1])
        key = tf.strings.join([tf.reshape(batch[features.BODY_PART], [-1]), tf.strings.as_string(label)], separator=":")
        pixels = parse_pixels(batch[features.PIXELS], config.image_size)
        return {features.PIXELS: pixels}, tf.cast(label, tf.float32)[:, tf.newaxis], table.lookup(key)

    dataset = dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return dataset.prefetch(tf.data.AUTOTUNE)


def schedule(config: TrainConfig) -> list[tuple[str, int, float]]:
    """(phase, epochs, learning rate): frozen base then fine-tuning; with a random base, the whole network."""
    if config.base_weights == "none":
        return [("all", config.head_epochs + config.finetune_epochs, config.finetune_learning_rate)]
    phases = [("head", config.head_epochs, config.head_learning_rate)]
    phases.append(("finetune", config.finetune_epochs, config.finetune_learning_rate))
    return [phase for phase in phases if phase[1] > 0]


def learning_rate(config: TrainConfig, peak: float, epochs: int, steps_per_epoch: int) -> float | LearningRate:
    """The phase's rate: constant (ReduceLROnPlateau lowers it), or warmed up then decayed along a cosine per step,
    which from random weights reaches a given eval AUC in fewer epochs than the plateau rule (README, "The demo
    profile")."""
    if config.learning_rate_schedule == "plateau":
        return peak
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak, decay_steps=total - warmup, warmup_target=peak if warmup else None, warmup_steps=warmup
    )


def compile_model(model: keras.Model, config: TrainConfig, rate: float | LearningRate) -> None:
    """Compiled again at each phase: Keras takes the layers' trainable flags into account only when compiling."""
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss=keras.losses.BinaryCrossentropy(),
        weighted_metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        jit_compile=config.xla,
    )


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch (loss, AUC on train and eval, seconds, the time left at this pace) on its own logger, so
    `mura pipeline run` shows training without TensorFlow's other logs."""

    def __init__(self, total_epochs: int) -> None:
        super().__init__()
        self.total, self.seconds = total_epochs, []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.seconds.append(time.monotonic() - self.started)
        left = (self.total - epoch - 1) * sum(self.seconds) / len(self.seconds)
        pylogging.getLogger(PROGRESS_LOGGER).info(
            "epoch %d/%d  loss %.4f  AUC %.3f  eval loss %.4f  eval AUC %.3f  %.0f s  ~%.0f s left at most",
            epoch + 1,
            self.total,
            logs.get("loss", float("nan")),
            logs.get("auc", float("nan")),
            logs.get("val_loss", float("nan")),
            logs.get("val_auc", float("nan")),
            self.seconds[-1],
            left,
        )


def train(model: keras.Model, config: TrainConfig, train_data, eval_data, log_dir: str, train_images: int) -> None:
    total_epochs = sum(epochs for _, epochs, _ in schedule(config))
    steps_per_epoch = config.steps_per_epoch or math.ceil(train_images / config.batch_size)
    callbacks = [
        EpochProgress(total_epochs),
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
        ),
    ]
    if config.learning_rate_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.1, patience=config.reduce_lr_patience, min_lr=1e-7
            )
        )
    epoch = 0
    for phase, epochs, peak in schedule(config):
        logging.info(
            "Training phase %s: %d epochs at learning rate %g (%s)", phase, epochs, peak, config.learning_rate_schedule
        )
        set_phase(model, phase, config.unfreeze_top_layers)
        compile_model(model, config, learning_rate(config, peak, epochs, steps_per_epoch))
        model.fit(
            train_data,
            validation_data=eval_data,
            epochs=epoch + epochs,
            initial_epoch=epoch,
            steps_per_epoch=config.steps_per_epoch or None,
            validation_steps=config.eval_steps or None,
            callbacks=callbacks,
            verbose=0,  # EpochProgress says it once, on a logger of its own
        )
        epoch += epochs


def serving_signatures(
    model: keras.Model,
    tft_output: tft.TFTransformOutput,
    config: TrainConfig,
    calibration: Calibration,
    points: OperatingPoints,
) -> dict:
    """Every signature runs the Transform graph (`tft_layer`) on raw input: serving preprocessing is training's."""
    model.tft_layer = tft_output.transform_features_layer()

    def preprocess(images: tf.Tensor) -> tf.Tensor:
        transformed = model.tft_layer({features.IMAGE: tf.reshape(images, [-1, 1])})
        return parse_pixels(transformed[features.PIXELS], config.image_size)

    return export.serving_signatures(model, preprocess, calibration, points)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    config = TrainConfig(**fn_args.custom_config["train"])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    counts = label_counts(tft_output)
    weights = class_weights(counts, config.class_weights)
    logging.info("Sample weights per (body part, label): %s", weights)

    placement = choose_placement()
    keras.mixed_precision.set_global_policy(placement.precision)
    batch_size = config.batch_size  # global: MirroredStrategy splits it across replicas
    schema = tft_output.transformed_metadata.schema
    factory = fn_args.data_accessor.tf_dataset_factory
    train_data = make_dataset(factory, fn_args.train_files, schema, config, weights, batch_size, training=True)
    eval_data = make_dataset(factory, fn_args.eval_files, schema, config, weights, batch_size, training=False)
    with placement.strategy.scope():
        model = build_model(config)
    train(model, config, train_data, eval_data, fn_args.model_run_dir, train_images=sum(counts.values()))
    calibration, points = post_training.choose(
        post_training.score_eval_split(model, factory, fn_args.eval_files, schema, config), config
    )
    # Without per-layer traces the SavedModel is a third of the size and loads 4x faster (TFMA loads it per worker).
    model.save(
        fn_args.serving_model_dir,
        save_format="tf",
        save_traces=False,
        signatures=serving_signatures(model, tft_output, config, calibration.chosen, points),
    )
    export.write_model_facts(fn_args.serving_model_dir, export.model_facts(calibration, points))
    logging.info("SavedModel written to %s", os.path.abspath(fn_args.serving_model_dir))
