"""Transform and Trainer in the shared pipeline run: the SavedModel, its signatures, and no serving skew.

Artifacts are found through ML Metadata, as reports find them, not by TFX's folder layout.
"""

import dataclasses
import glob
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from PIL import Image
from scipy.special import logit
from tfx.types import Artifact, artifact_utils
from tfx.utils import io_utils

from analysis.metadata import latest_execution, open_store, output_artifacts
from analysis.run_outputs import find_run_outputs
from components.modules.export import read_model_facts
from components.modules.trainer import compile_model, label_counts, learning_rate
from mura import features
from mura.calibration import Calibration
from mura.config import PROFILES
from mura.layout import BODY_PARTS
from mura.reader import read_mura
from mura.signatures import SERVING_BODY_PART, SERVING_DEFAULT, SERVING_EXAMPLES, SERVING_STUDY
from tests.conftest import TINY_TRAIN


def outputs(run, component: str) -> dict[str, Artifact]:
    """What the component's latest completed execution in the run wrote, by artifact type name."""
    store = open_store(run.metadata)
    execution = latest_execution(store, component)
    return output_artifacts(store, [execution])[execution.id]


@pytest.fixture(scope="module")
def serving_dir(pipeline_run) -> str:
    run, _ = pipeline_run
    return find_run_outputs(run.metadata, needs=["model"]).require("model").serving_model


@pytest.fixture(scope="module")
def serving(serving_dir: str):
    return tf.saved_model.load(serving_dir)


def encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    rng = np.random.default_rng(sum(size))
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3 if mode == "RGB" else 1), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze()).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def test_serving_default_takes_png_and_jpeg_bytes_of_any_size(serving, serving_dir: str) -> None:
    images = [
        encoded("L", (57, 300), "PNG"),
        encoded("RGB", (512, 389), "PNG"),
        encoded("L", (40, 40), "JPEG"),
        encoded("RGB", (1024, 700), "JPEG"),
    ]
    outputs = serving.signatures[SERVING_DEFAULT](images=tf.constant(images))
    probability, abnormal = outputs["probability"].numpy(), outputs["abnormal"].numpy()
    assert probability.shape == abnormal.shape == (4,)
    assert ((probability >= 0) & (probability <= 1)).all()
    global_threshold = read_model_facts(serving_dir)["operating_points"]["thresholds"]["global"]
    np.testing.assert_allclose(outputs["threshold"].numpy(), global_threshold, atol=1e-7)
    np.testing.assert_array_equal(abnormal, (probability > outputs["threshold"].numpy()).astype(np.int64))


def test_undecodable_bytes_are_an_error_not_a_blank_image(serving) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError):
        serving.signatures[SERVING_DEFAULT](images=tf.constant([b"\x89PNG\r\n\x1a\n but no more"]))


def transformed_test_examples(run) -> list[dict]:
    transform = outputs(run, "Transform")
    spec = tft.TFTransformOutput(transform["TransformGraph"].uri).transformed_feature_spec()
    test_split = artifact_utils.get_split_uri([transform["Examples"]], "test")
    records = tf.data.TFRecordDataset(glob.glob(io_utils.all_files_pattern(test_split)), compression_type="GZIP")
    return [tf.io.parse_single_example(r, spec) for r in records]


def test_no_skew_between_raw_bytes_served_and_the_model_on_transformed_examples(
    pipeline_run, serving, serving_dir: str, sample_root: Path
) -> None:
    run, _ = pipeline_run
    examples = transformed_test_examples(run)[:24]
    assert examples
    pixels = np.stack([tf.io.parse_tensor(e[features.PIXELS], tf.uint8).numpy() for e in examples])
    assert pixels.shape[1:] == (TINY_TRAIN.image_size, TINY_TRAIN.image_size, 1) and pixels.dtype == np.uint8
    model = keras.models.load_model(serving_dir)
    on_transformed = model.predict({features.PIXELS: pixels}, verbose=0).reshape(-1)
    raw = [(sample_root / e[features.SOURCE_PATH].numpy().decode()).read_bytes() for e in examples]
    on_raw = serving.signatures[SERVING_DEFAULT](images=tf.constant(raw))
    np.testing.assert_allclose(on_raw["uncalibrated_probability"].numpy(), on_transformed, atol=1e-5)
    # The calibration inside the graph is the one its facts describe, applied to the network's log-odds.
    chosen = read_model_facts(serving_dir)["calibration"]["chosen"]
    clipped = np.clip(on_transformed.astype(np.float64), 1e-7, 1 - 1e-7)
    expected = Calibration(chosen["method"], chosen["slope"], chosen["intercept"]).apply(logit(clipped))
    np.testing.assert_allclose(on_raw["probability"].numpy(), expected, atol=1e-5)


def test_the_model_carries_its_calibration_and_operating_points(serving, serving_dir: str, sample_root: Path) -> None:
    """Fitted on the eval split after training: the facts say what was chosen and why, and the graph applies it."""
    facts = read_model_facts(serving_dir)
    calibration, points = facts["calibration"], facts["operating_points"]
    assert calibration["setting"] == TINY_TRAIN.calibration and calibration["eval_images"] > 0
    # The fit minimises the eval log loss over maps that include the identity: it never makes it worse.
    assert calibration["after"]["log_loss"] <= calibration["before"]["log_loss"] + 1e-9
    assert points["rule"] == TINY_TRAIN.operating_point
    assert [part["group"] for part in points["parts"]] == list(BODY_PARTS)
    for part in points["parts"]:  # the tiny eval split has fewer studies per part than the minimum
        assert part["fell_back"] and part["threshold"] == points["overall"]["threshold"], part
    thresholds = points["thresholds"]
    assert 0 < thresholds["global"] < 1 and set(thresholds) == {"global", *BODY_PARTS}
    # serving_examples and serving_body_part judge at the part's threshold; serving_study is the mean of the images.
    studies = sorted({p.parent for p in sample_root.rglob("valid/XR_HAND/*/*/*.png")})
    images = tf.constant([p.read_bytes() for p in sorted(studies[0].glob("*.png"))])
    default = serving.signatures[SERVING_DEFAULT](images=images)
    parts = tf.fill(tf.shape(images), "XR_HAND")
    by_part = serving.signatures[SERVING_BODY_PART](images=images, body_parts=parts)
    np.testing.assert_allclose(by_part["threshold"].numpy(), thresholds["XR_HAND"], atol=1e-7)
    study = serving.signatures[SERVING_STUDY](images=images, body_part=tf.constant("XR_HAND"))
    assert float(study["probability"]) == pytest.approx(float(np.mean(default["probability"].numpy())), abs=1e-6)
    assert float(study["threshold"]) == pytest.approx(thresholds["XR_HAND"], abs=1e-7)
    assert int(study["abnormal"]) == int(float(study["probability"]) > float(study["threshold"]))


def test_serving_examples_scores_serialized_examples_like_raw_bytes(serving, sample_root: Path) -> None:
    paths = sorted(sample_root.rglob("valid/*/*/*/*.png"))[:5]
    images = [p.read_bytes() for p in paths]
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
                }
            )
        ).SerializeToString()
        for image in images
    ]
    by_example = serving.signatures[SERVING_EXAMPLES](examples=tf.constant(examples))["probability"].numpy()
    by_bytes = serving.signatures[SERVING_DEFAULT](images=tf.constant(images))["probability"].numpy()
    np.testing.assert_allclose(by_example, by_bytes, atol=1e-6)


def test_transform_counted_train_labels_per_body_part(pipeline_run, sample_root: Path) -> None:
    run, _ = pipeline_run
    tft_output = tft.TFTransformOutput(outputs(run, "Transform")["TransformGraph"].uri)
    expected = Counter(
        (r.body_part, r.label) for r in read_mura(sample_root, progress=False).images if r.split == "train"
    )
    assert label_counts(tft_output) == dict(expected)


def test_training_wrote_tensorboard_logs(pipeline_run) -> None:
    run, _ = pipeline_run
    assert list(Path(outputs(run, "Trainer")["ModelRun"].uri).rglob("events.out.tfevents.*"))


def test_the_cosine_schedule_warms_up_to_the_peak_then_decays_to_zero_at_the_phases_end() -> None:
    cosine = dataclasses.replace(PROFILES["demo"], learning_rate_schedule="cosine", warmup_epochs=1.0)
    rate = learning_rate(cosine, 2e-3, epochs=4, steps_per_epoch=10)
    values = np.array([float(rate(step)) for step in range(41)])
    assert values[0] == 0.0 and values[5] == pytest.approx(1e-3) and values[10] == pytest.approx(2e-3)
    assert values.max() == pytest.approx(2e-3) and np.all(np.diff(values[10:]) <= 0)
    assert values[25] == pytest.approx(1e-3) and values[40] == pytest.approx(0.0, abs=1e-9)
    # A warm-up longer than the phase is cut short, so the peak is still reached.
    short = learning_rate(dataclasses.replace(cosine, warmup_epochs=5.0), 2e-3, epochs=1, steps_per_epoch=5)
    assert max(float(short(step)) for step in range(6)) == pytest.approx(2e-3)
    # No warm-up: the phase starts at the peak. The plateau rule keeps the constant rate ReduceLROnPlateau lowers.
    assert float(learning_rate(dataclasses.replace(cosine, warmup_epochs=0.0), 2e-3, 4, 10)(0)) == pytest.approx(2e-3)
    assert learning_rate(PROFILES["smoke"], 2e-3, 4, 10) == 2e-3
    # The optimizer keeps the schedule through serialization (a SavedModel carries its optimizer's config).
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    compile_model(model, cosine, rate)
    saved = keras.optimizers.serialize(model.optimizer)["config"]["learning_rate"]
    restored = keras.optimizers.schedules.deserialize(saved)
    assert [float(restored(step)) for step in (0, 5, 10, 25, 40)] == pytest.approx(list(values[[0, 5, 10, 25, 40]]))
