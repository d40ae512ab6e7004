"""The exported signatures on a tiny model with a known calibration and known thresholds, saved as the Trainer saves
the real one and loaded back: what serving_default, serving_body_part, serving_examples and serving_study answer."""

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image
from scipy.special import expit, logit

from components.modules.export import model_facts, read_model_facts, serving_signatures, write_model_facts
from mura import features
from mura.calibration import Calibration, calibrate
from mura.image_ops import decode_batch_to_square
from mura.layout import BODY_PARTS
from mura.operating_points import GLOBAL, OperatingPoint, OperatingPoints, choose_operating_points
from mura.signatures import (
    ABNORMAL,
    BODY_PART_INPUT,
    BODY_PARTS_INPUT,
    IMAGE_PROBABILITIES,
    IMAGES_INPUT,
    PROBABILITY,
    SERVING_BODY_PART,
    SERVING_DEFAULT,
    SERVING_EXAMPLES,
    SERVING_STUDY,
    THRESHOLD,
    UNCALIBRATED_PROBABILITY,
)

SIZE = 8
PLATT = Calibration("platt", slope=0.5, intercept=-0.3)
HAND, WRIST, GLOBAL_THRESHOLD = 0.3, 0.7, 0.5
POINTS = OperatingPoints(
    rule="kappa",
    target_sensitivity=0.9,
    min_studies=10,
    overall=OperatingPoint(GLOBAL, GLOBAL_THRESHOLD, 40, 20, 0.5),
    parts=(OperatingPoint("XR_HAND", HAND, 12, 6, 0.6), OperatingPoint("XR_WRIST", WRIST, 12, 6, 0.7)),
)
GRAYS = (20, 60, 100, 120, 130, 150, 170, 200, 250)  # uncalibrated probabilities from about 0.01 to 0.99


def tiny_model() -> keras.Model:
    """Probability of a gray image = sigmoid(0.05 * its mean - 6): known, and spread over (0, 1)."""
    pixels = keras.Input(shape=(SIZE, SIZE, 1), dtype=tf.uint8, name=features.PIXELS)
    mean = keras.layers.GlobalAveragePooling2D()(tf.cast(pixels, tf.float32))
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")
    model = keras.Model(pixels, output(mean))
    output.set_weights([np.array([[0.05]]), np.array([-6.0])])
    return model


def gray_png(level: int) -> bytes:
    """Square, so resizing to SIZE pads nothing and the mean stays the gray level."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), level, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_uncalibrated(levels) -> np.ndarray:
    return expit(0.05 * np.asarray(levels, dtype=float) - 6.0)


def export(path: Path, calibration: Calibration, points: OperatingPoints):
    model = tiny_model()
    signatures = serving_signatures(model, lambda images: decode_batch_to_square(images, SIZE), calibration, points)
    model.save(str(path), save_format="tf", save_traces=False, signatures=signatures)
    return tf.saved_model.load(str(path)).signatures


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    return export(tmp_path_factory.mktemp("export") / "model", PLATT, POINTS)


@pytest.fixture(scope="module")
def images() -> tf.Tensor:
    return tf.constant([gray_png(level) for level in GRAYS])


def as_numpy(outputs: dict) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in outputs.items()}


def test_serving_default_returns_calibrated_probabilities_at_the_global_threshold(served, images) -> None:
    answer = as_numpy(served[SERVING_DEFAULT](**{IMAGES_INPUT: images}))
    uncalibrated = expected_uncalibrated(GRAYS)
    np.testing.assert_allclose(answer[UNCALIBRATED_PROBABILITY], uncalibrated, atol=1e-6)
    np.testing.assert_allclose(answer[PROBABILITY], expit(0.5 * logit(uncalibrated) - 0.3), atol=1e-5)
    assert np.abs(answer[PROBABILITY] - uncalibrated).max() > 0.1  # calibration really moved them
    assert (answer[THRESHOLD] == np.float32(GLOBAL_THRESHOLD)).all()
    np.testing.assert_array_equal(answer[ABNORMAL], (answer[PROBABILITY] > GLOBAL_THRESHOLD).astype(np.int64))


def test_serving_body_part_judges_each_image_at_its_parts_threshold(served, images) -> None:
    parts = ["XR_HAND", "XR_WRIST", "", "XR_NOSE", "XR_HAND", "XR_WRIST", "XR_HAND", "XR_WRIST", "XR_ELBOW"]
    answer = as_numpy(served[SERVING_BODY_PART](**{IMAGES_INPUT: images, BODY_PARTS_INPUT: tf.constant(parts)}))
    default = as_numpy(served[SERVING_DEFAULT](**{IMAGES_INPUT: images}))
    np.testing.assert_allclose(answer[PROBABILITY], default[PROBABILITY], atol=1e-7)
    expected = np.array([{"XR_HAND": HAND, "XR_WRIST": WRIST}.get(part, GLOBAL_THRESHOLD) for part in parts])
    np.testing.assert_allclose(answer[THRESHOLD], expected, atol=1e-7)
    np.testing.assert_array_equal(answer[ABNORMAL], (answer[PROBABILITY] > expected).astype(np.int64))
    # The images exercise it: some verdicts differ from serving_default's at the global threshold.
    assert (answer[ABNORMAL] != default[ABNORMAL]).any()
    with pytest.raises(tf.errors.InvalidArgumentError, match=BODY_PARTS_INPUT):
        served[SERVING_BODY_PART](**{IMAGES_INPUT: images, BODY_PARTS_INPUT: tf.constant(["XR_HAND"])})


def test_serving_examples_uses_the_examples_body_part_when_it_has_one(served, images) -> None:
    def example(image: bytes, part: str | None) -> bytes:
        feature = {features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
        if part is not None:
            feature[features.BODY_PART] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[part.encode()]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    parts = ["XR_HAND", None, "XR_WRIST", "XR_SHOULDER"]
    examples = tf.constant([example(image, part) for image, part in zip(images.numpy(), parts, strict=False)])
    answer = as_numpy(served[SERVING_EXAMPLES](examples=examples))
    np.testing.assert_allclose(answer[THRESHOLD], [HAND, GLOBAL_THRESHOLD, WRIST, GLOBAL_THRESHOLD], atol=1e-7)
    default = as_numpy(served[SERVING_DEFAULT](**{IMAGES_INPUT: images[:4]}))
    np.testing.assert_allclose(answer[PROBABILITY], default[PROBABILITY], atol=1e-7)


def test_serving_study_is_the_mean_of_serving_default_at_the_parts_threshold(served, images) -> None:
    study = images[2:6]  # calibrated probabilities between the hand's and the wrist's thresholds, on average
    default = as_numpy(served[SERVING_DEFAULT](**{IMAGES_INPUT: study}))
    verdicts = {}
    for part, threshold in [("XR_HAND", HAND), ("XR_WRIST", WRIST), ("", GLOBAL_THRESHOLD), ("XR_NOSE", 0.5)]:
        answer = as_numpy(served[SERVING_STUDY](**{IMAGES_INPUT: study, BODY_PART_INPUT: tf.constant(part)}))
        assert answer[PROBABILITY].shape == answer[ABNORMAL].shape == answer[THRESHOLD].shape == ()
        assert answer[PROBABILITY] == pytest.approx(default[PROBABILITY].mean(), abs=1e-6)
        np.testing.assert_allclose(answer[IMAGE_PROBABILITIES], default[PROBABILITY], atol=1e-7)
        assert answer[THRESHOLD] == pytest.approx(threshold)
        assert answer[ABNORMAL] == int(answer[PROBABILITY] > threshold)
        verdicts[part] = int(answer[ABNORMAL])
    assert (verdicts["XR_HAND"], verdicts["XR_WRIST"]) == (1, 0)  # the part decides the verdict
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one image"):
        served[SERVING_STUDY](**{IMAGES_INPUT: tf.constant([], tf.string), BODY_PART_INPUT: tf.constant("XR_HAND")})


def test_the_study_signature_has_the_agreed_interface(served) -> None:
    signature = served[SERVING_STUDY]
    inputs = signature.structured_input_signature[1]
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in inputs.items()} == {
        IMAGES_INPUT: (tf.string, [None]),
        BODY_PART_INPUT: (tf.string, []),
    }
    outputs = {name: (spec.dtype, spec.shape.as_list()) for name, spec in signature.structured_outputs.items()}
    assert outputs == {
        PROBABILITY: (tf.float32, []),
        ABNORMAL: (tf.int64, []),
        THRESHOLD: (tf.float32, []),
        IMAGE_PROBABILITIES: (tf.float32, [None]),
    }


def test_without_calibration_the_probability_is_the_networks_own(tmp_path: Path, images) -> None:
    fixed = choose_operating_points([], BODY_PARTS, "fixed", 0.5)
    served = export(tmp_path / "model", Calibration("none"), fixed)
    answer = as_numpy(served[SERVING_DEFAULT](**{IMAGES_INPUT: images}))
    np.testing.assert_array_equal(answer[PROBABILITY], answer[UNCALIBRATED_PROBABILITY])
    # The Keras model inside (Grad-CAM's) still loads, threshold table and all, and is the uncalibrated network.
    keras_model = keras.models.load_model(str(tmp_path / "model"), compile=False)
    pixels = decode_batch_to_square(images, SIZE)
    np.testing.assert_allclose(keras_model(pixels).numpy().reshape(-1), expected_uncalibrated(GRAYS), atol=1e-6)


def test_the_facts_beside_the_graph_say_what_it_holds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 200)
    labels = (rng.random(200) < expit(logits / 2 - 1)).astype(int)
    report = calibrate("platt", logits, labels, [f"s{i}" for i in range(200)])
    write_model_facts(str(tmp_path), model_facts(report, POINTS))
    facts = read_model_facts(str(tmp_path))
    assert facts["calibration"]["chosen"] == {
        "method": "platt",
        "slope": report.chosen.slope,
        "intercept": report.chosen.intercept,
        "temperature": None,
    }
    assert facts["calibration"]["before"]["ece"] == report.before.ece
    assert facts["calibration"]["after"]["log_loss"] == report.after.log_loss
    assert len(facts["calibration"]["after"]["bins"]) == 10
    assert facts["operating_points"]["rule"] == "kappa"
    assert facts["operating_points"]["thresholds"] == {"global": 0.5, "XR_HAND": HAND, "XR_WRIST": WRIST}
    assert [part["group"] for part in facts["operating_points"]["parts"]] == ["XR_HAND", "XR_WRIST"]
