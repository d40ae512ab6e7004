"""The model, its phases and the GPU path, proven on the CPU with tiny shapes."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.modules.trainer import schedule
from mura.config import PROFILES, TrainConfig
from mura.devices import choose_placement
from mura.model import BASE_NAME, BaseWeightsError, augmentation, build_model, set_phase

TINY = TrainConfig(image_size=32, base_weights="none", dense_units=8)


def test_without_accelerators_the_placement_is_the_default_strategy_in_float32() -> None:
    placement = choose_placement(accelerators=[])
    assert (placement.precision, placement.replicas) == ("float32", 1)
    assert not isinstance(placement.strategy, tf.distribute.MirroredStrategy)


def trainable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.get_layer(BASE_NAME).layers if layer.trainable and layer.weights]


def test_phases_freeze_what_they_say() -> None:
    model = build_model(TINY)
    set_phase(model, "head")
    assert not model.get_layer(BASE_NAME).trainable
    assert {w.name.split("/")[0] for w in model.trainable_weights} == {"dense", "probability"}
    set_phase(model, "finetune", unfreeze_top_layers=20)
    tuned = trainable_layers(model)
    assert tuned and len(tuned) < 20
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in tuned)
    assert all(
        model.get_layer(BASE_NAME).layers.index(layer) >= len(model.get_layer(BASE_NAME).layers) - 20 for layer in tuned
    )
    set_phase(model, "all")
    assert len(trainable_layers(model)) > 100


def test_the_schedule_trains_everything_when_the_base_is_random() -> None:
    assert schedule(TINY) == [("all", TINY.head_epochs + TINY.finetune_epochs, TINY.finetune_learning_rate)]
    pretrained = dataclasses.replace(TINY, base_weights="imagenet")
    assert [phase for phase, _, _ in schedule(pretrained)] == ["head", "finetune"]
    assert schedule(pretrained)[1][2] < schedule(pretrained)[0][2]


def test_augmentation_is_per_profile_and_only_active_in_training() -> None:
    def layers(config: TrainConfig) -> list[str]:
        return [type(layer).__name__ for layer in augmentation(config).layers]

    assert layers(PROFILES["full"]) == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomBrightness",
        "RandomContrast",
    ]
    assert layers(dataclasses.replace(TINY, rotation=0.0, zoom=0.0)) == [
        "RandomFlip",
        "RandomBrightness",
        "RandomContrast",
    ]
    augment = augmentation(PROFILES["full"])
    pixels = tf.random.uniform((4, 32, 32, 1), 0, 255, seed=1)
    assert np.array_equal(augment(pixels, training=False), pixels)
    assert not np.allclose(augment(pixels, training=True), pixels)
    with pytest.raises(ValueError, match="rotation"):
        TrainConfig(rotation=0.6)
    with pytest.raises(ValueError, match="zoom"):
        TrainConfig(zoom=1.0)
    with pytest.raises(ValueError, match="contrast"):
        TrainConfig(contrast=-0.1)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local ResNet50V2 (no top) weights file, as a user without network would bring."""
    base = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path_factory.mktemp("weights") / "resnet50v2_notop.h5")
    base.save_weights(path)
    return path


def test_base_weights_load_from_a_local_file(weights_file: str) -> None:
    model = build_model(dataclasses.replace(TINY, base_weights=weights_file))
    reference = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(32, 32, 3))
    reference.load_weights(weights_file)
    for ours, theirs in zip(model.get_layer(BASE_NAME).weights, reference.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def batchnorm_momenta(model: keras.Model) -> set[float]:
    return {
        layer.momentum
        for layer in model.get_layer(BASE_NAME).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_a_random_base_tracks_batchnorm_statistics_faster_and_a_pretrained_one_is_left_alone(weights_file) -> None:
    assert batchnorm_momenta(build_model(TINY)) == {TINY.scratch_batchnorm_momentum}
    assert batchnorm_momenta(build_model(dataclasses.replace(TINY, base_weights=weights_file))) == {0.99}


def test_missing_weights_file_and_unreachable_imagenet_say_what_to_use_instead(tmp_path) -> None:
    with pytest.raises(BaseWeightsError, match="does not exist"):
        build_model(dataclasses.replace(TINY, base_weights=str(tmp_path / "nope.h5")))
    try:
        model = build_model(dataclasses.replace(TINY, base_weights="imagenet"))
    except BaseWeightsError as error:  # machines without network, like this project's CI
        assert "'none'" in str(error) and "weights file" in str(error)
    else:  # a connected machine downloads them
        assert model.get_layer(BASE_NAME).weights


def test_the_full_profile_model_trains_under_mirrored_strategy_and_mixed_precision(weights_file: str) -> None:
    """The GPU path as far as the CPU goes: MirroredStrategy over the CPU, float16 compute, float32 output."""
    placement = choose_placement(accelerators=["/cpu:0"])
    assert placement.precision == "mixed_float16"
    config = dataclasses.replace(PROFILES["full"], image_size=32, base_weights=weights_file, dense_units=8)
    keras.mixed_precision.set_global_policy(placement.precision)
    try:
        with placement.strategy.scope():
            model = build_model(config)
            set_phase(model, "finetune", config.unfreeze_top_layers)
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
        assert isinstance(placement.strategy, tf.distribute.MirroredStrategy)
        assert model.get_layer("dense").compute_dtype == "float16"
        assert model.get_layer("probability").compute_dtype == "float32"
        assert model.output.dtype == tf.float32
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 255, size=(16, 32, 32, 1), dtype=np.uint8)
        labels = rng.integers(0, 2, size=(16, 1)).astype("float32")
        history = model.fit({"pixels": pixels}, labels, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
        assert math.isfinite(history.history["loss"][-1])
    finally:
        keras.mixed_precision.set_global_policy("float32")
