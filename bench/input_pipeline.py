"""Input pipeline: images/s of the Trainer's tf.data pipeline (read Transform's TFRecords, augment, batch)
against the seed's loader, Keras' ImageDataGenerator.flow_from_dataframe with the same augmentations and image
size on the same synthetic PNGs, and against the raw limit, decoding the same PNGs on every core.

The Trainer's pipeline is `components.modules.trainer.make_dataset`, reading through TFX's own reader (the
Trainer's `tf_dataset_factory`), over TFRecords in Transform's output format (gzipped tf.Examples of serialized
uint8 pixels, one file per split as the DirectRunner writes it), written here with the project's decoder
(`mura.image_ops.decode_to_square`) rather than a Beam run of Transform; augmentation is the model's own layers
(`mura.model.augmentation`) at the seed's strengths, which the full profile keeps (the demo profile trains with
flips only), mapped over each batch. Measured at the demo and full profiles' image sizes and batch sizes.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import pipeline  # noqa: F401  (the pipeline's process settings, set before TensorFlow loads)
from bench import report
from bench.data import MAX_SIDE, decode_rate, image_files, read_all, sample_config, synthetic_tree
from mura.config import PROFILES, TrainConfig
from mura.layout import IMAGE_PATH, parse_study

# The seed's augmentation strengths (TrainConfig's defaults), the same at every image size, as the seed's loader.
SEED_AUGMENTATION = TrainConfig()

NOTES = """
What bounds it. The Trainer's pipeline decodes nothing: Transform decoded and resized every image once, and the
Trainer reads uint8 pixels. Reading, parsing, shuffling and batching alone ("alone (no augmentation)") keep ahead
of the decode limit at the demo's 64 px; at 320 px each image is 100 KB of pixels, inflated from one gzipped file
by one reader thread, copied through the 2,048-image shuffle buffer and into the batch, more bytes per image than
the small PNGs decode to. The cost is the augmentation: the model's five Keras layers, mapped here over each batch
on the CPU. The one-layer-at-a-time table shows where it goes: RandomRotation and RandomZoom each resample the
whole image through ImageProjectiveTransformV3 (bilinear, per pixel), two full passes that dominate at 320 px;
flip, brightness and contrast are cheap elementwise passes. The seed's loader is single-threaded but cheap on
these synthetic PNGs (256 px at most: a fast decode, a small resample), so the lead narrows at 320 px.
In the Trainer the augmentation is inside the model, not in tf.data: on the GPU nodes the full profile is for, it
runs on the accelerator as part of the step and the CPU's share is the "alone" row; on a CPU-only machine it runs
inside the training step, which costs far more (see the training step section). Not changed: fusing rotation and
zoom into one transform would halve the geometric cost but changes the model's layers and their saved form, for a
cost that only shows on the CPU, where the step dwarfs it.
"""
SEED_LOADER_BATCHES = 16  # the seed's loader is slow: a few batches give a stable rate
PIPELINE_SECONDS = 4.0  # the Trainer's pipeline runs at least this long


def labels_of(files: list[Path]) -> list[tuple[str, int]]:
    """(body part, label) from each image's MURA path (the study folder's _positive/_negative suffix)."""
    keys = [parse_study(IMAGE_PATH.search(path.as_posix())) for path in files]
    return [(key.body_part, key.folder_label) for key in keys]


def write_transformed(files: list[Path], images: list[bytes], size: int, path: Path) -> None:
    """Transform's output for these images: what the Trainer reads."""
    import tensorflow as tf

    from mura import features
    from mura.image_ops import decode_to_square

    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for (part, label), image in zip(labels_of(files), images, strict=True):
            pixels = tf.io.serialize_tensor(decode_to_square(image, size)).numpy()
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        features.PIXELS: tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels])),
                        features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                        features.BODY_PART: tf.train.Feature(bytes_list=tf.train.BytesList(value=[part.encode()])),
                    }
                )
            )
            writer.write(example.SerializeToString())


def trainer_reader():
    """The Trainer's `fn_args.data_accessor.tf_dataset_factory` for tf.Example TFRecords, and the schema of the
    features `write_transformed` writes, as Transform's output schema describes them."""
    import tensorflow as tf
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx.components.util import examples_utils, tfxio_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from mura import features

    examples = standard_artifacts.Examples()
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], ["bench"])
    schema = schema_utils.schema_from_feature_spec(
        {
            features.PIXELS: tf.io.FixedLenFeature([], tf.string),
            features.LABEL: tf.io.FixedLenFeature([], tf.int64),
            features.BODY_PART: tf.io.FixedLenFeature([], tf.string),
        }
    )
    return factory, schema


def trainer_pipeline_rate(records: Path, files: list[Path], config: TrainConfig, augment, seconds: float) -> float:
    """Images/s of make_dataset (training mode: shuffled, repeated), with `augment` (a Keras layer, or None for
    the pipeline alone) mapped over each batch."""
    import tensorflow as tf

    from components.modules.trainer import make_dataset
    from mura import features
    from mura.class_weights import class_weights

    weights = class_weights(Counter(labels_of(files)), config.class_weights)
    factory, schema = trainer_reader()
    dataset = make_dataset(factory, [str(records)], schema, config, weights, config.batch_size, training=True)
    dataset = dataset.repeat()
    if augment is not None:

        def augmented(x: dict[str, tf.Tensor], y: tf.Tensor, w: tf.Tensor):
            return {features.PIXELS: augment(tf.cast(x[features.PIXELS], tf.float32), training=True)}, y, w

        dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    iterator = iter(dataset)
    for _ in range(3):  # threads started, functions traced, shuffle buffer filled
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += len(next(iterator)[1])
    return count / (time.perf_counter() - start)


def seed_loader_rate(files: list[Path], config: TrainConfig, batches: int) -> float:
    """The seed's loader: ImageDataGenerator.flow_from_dataframe over the PNGs, the model's augmentations."""
    import numpy as np
    import pandas as pd
    from tf_keras.preprocessing.image import ImageDataGenerator

    rng = np.random.default_rng(0)

    def contrast(x: np.ndarray) -> np.ndarray:  # ImageDataGenerator has no contrast option: RandomContrast's
        mean = x.mean()
        return (x - mean) * rng.uniform(1 - SEED_AUGMENTATION.contrast, 1 + SEED_AUGMENTATION.contrast) + mean

    strengths = SEED_AUGMENTATION
    generator = ImageDataGenerator(
        horizontal_flip=True,  # RandomFlip("horizontal")
        rotation_range=strengths.rotation * 360,  # degrees; RandomRotation takes a fraction of a full turn
        zoom_range=strengths.zoom,
        brightness_range=(1 - strengths.brightness, 1 + strengths.brightness),
        fill_mode="constant",
        preprocessing_function=contrast,  # RandomContrast
    )
    frame = pd.DataFrame(
        {"filename": [str(path) for path in files], "class": [str(label) for _, label in labels_of(files)]}
    )
    flow = generator.flow_from_dataframe(
        frame,
        target_size=(config.image_size, config.image_size),
        color_mode="grayscale",
        class_mode="binary",
        batch_size=config.batch_size,
        shuffle=True,
    )
    next(flow)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        count += len(next(flow)[1])
    return count / (time.perf_counter() - start)


def run(workdir: Path, quick: bool) -> report.Section:
    from mura.model import augmentation

    root = synthetic_tree(workdir, sample_config(quick))
    files = image_files(root, "train")[: 128 if quick else 1024]
    images = read_all(files, threads=8)
    decode = decode_rate(images, seconds=1.0 if quick else 3.0)
    profiles = {"demo": PROFILES["demo"], "full": PROFILES["full"]}
    strengths = SEED_AUGMENTATION
    if quick:
        profiles = {"demo": dataclasses.replace(PROFILES["demo"], image_size=32, batch_size=8)}

    section = report.Section(
        key="input_pipeline",
        title="Input pipeline: the Trainer's tf.data against the seed's loader and the decode limit",
        setup=(
            f"{len(files):,} synthetic train images (PNG, longest side at most {MAX_SIDE} px). "
            "The Trainer's pipeline: `make_dataset` in training mode (TFX's `tf_dataset_factory`: read, shuffle, "
            "batch, parse; then each batch's pixels parsed and sample weights looked up in parallel, prefetch) "
            "plus the model's augmentation layers at the seed's strengths mapped over each "
            f"batch, timed for {PIPELINE_SECONDS:g} s; also without augmentation, and with one augmentation layer "
            "at a time. The seed's loader: `ImageDataGenerator.flow_from_dataframe` (flip, "
            f"{strengths.rotation * 360:g} degree rotation, {strengths.zoom:g} zoom, brightness "
            f"{1 - strengths.brightness:g}-{1 + strengths.brightness:g}, contrast {1 - strengths.contrast:g}-"
            f"{1 + strengths.contrast:g} through "
            f"`preprocessing_function`), grayscale, iterated as `model.fit` does by default (one thread), "
            f"{SEED_LOADER_BATCHES} batches. The decode limit: TensorFlow's PNG decoder on every core, "
            "from memory."
        ),
        notes=NOTES,
    )
    seconds = 1.0 if quick else PIPELINE_SECONDS
    rows = [["decode the PNGs, all cores (the limit)", "", "", report.fmt(decode)]]
    layers = []
    for name, config in profiles.items():
        records = workdir / f"transformed-{len(files)}-{config.image_size}.tfrecord.gz"
        if not records.exists():
            write_transformed(files, images, config.image_size, records)
        ours = trainer_pipeline_rate(records, files, config, augmentation(SEED_AUGMENTATION), seconds)
        bare = trainer_pipeline_rate(records, files, config, None, seconds)
        seed = seed_loader_rate(files, config, 4 if quick else SEED_LOADER_BATCHES)
        shape = f"{name} ({config.image_size} px, batch {config.batch_size})"
        section.comparisons += [
            report.Comparison(f"{shape}: Trainer's pipeline vs the seed's", ours, seed, "seed's loader", "img/s", 5),
            report.Comparison(f"{shape}: Trainer's pipeline vs the decode limit", ours, decode, "decode", "img/s", 0.8),
            report.Comparison(f"{shape}: the same without augmentation", bare, decode, "decode", "img/s"),
        ]
        rows += [
            ["Trainer's tf.data pipeline with the seed's augmentation", name, config.image_size, report.fmt(ours)],
            ["Trainer's tf.data pipeline alone (no augmentation)", name, config.image_size, report.fmt(bare)],
            ["seed's ImageDataGenerator", name, config.image_size, report.fmt(seed)],
        ]
        layers = [  # the last (largest) shape: which augmentation layer costs what
            [
                type(layer).__name__,
                name,
                config.image_size,
                report.fmt(trainer_pipeline_rate(records, files, config, layer, 2)),
            ]
            for layer in augmentation(SEED_AUGMENTATION).layers
        ]
    section.tables = [
        ("Every measurement", ["what", "profile", "image size", "images/s"], rows),
        (
            "The Trainer's pipeline with one augmentation layer at a time",
            ["layer", "profile", "image size", "images/s"],
            layers,
        ),
    ]
    return section


if __name__ == "__main__":
    report.main(run, __doc__)
