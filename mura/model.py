"""The classifier: ResNet50V2 + global pooling + Dense(512) + Dropout(0.5) + one sigmoid, as in the seed.

Augmentation lives inside the model as Keras layers, so it runs on the accelerator and only in training.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tf_keras as keras

from mura import features
from mura.config import TrainConfig
from mura.filesystem import is_uri

BASE_NAME = "resnet50v2"
GRADCAM_LAYER = "post_relu"  # ResNet50V2's last feature layer


class BaseWeightsError(Exception):
    """The requested ResNet50V2 weights cannot be had; the message lists the alternatives."""


def augmentation(config: TrainConfig) -> keras.Sequential:
    """Flips, plus the seed's rotation, zoom, brightness and contrast at the profile's strengths (0 leaves a layer
    out); pixels stay in [0, 255].

    Kept in float32 under mixed precision: pixel arithmetic needs no speed-up, and some ops lack half kernels.
    """
    layers = [keras.layers.RandomFlip("horizontal", dtype="float32")]
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="constant", dtype="float32"))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="constant", dtype="float32"))
    if config.brightness:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0.0, 255.0), dtype="float32"))
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, dtype="float32"))
    return keras.Sequential(layers, name="augment")


def resnet50v2_base(image_size: int, weights: str) -> keras.Model:
    base = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    if weights == "none":
        return base
    if weights == "imagenet":
        try:
            return keras.applications.ResNet50V2(
                include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3)
            )
        except Exception as error:  # Keras raises plain Exception for a failed download
            raise BaseWeightsError(
                f"ResNet50V2 ImageNet weights could not be downloaded ({error}). Without network access, set "
                "base_weights to a local Keras weights file of ResNet50V2 without its top "
                "(resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5), or to 'none' for random initialisation."
            ) from None
    if not is_uri(weights) and not os.path.exists(weights):
        raise BaseWeightsError(f"base_weights file {weights} does not exist; use a path, 'imagenet' or 'none'")
    base.load_weights(weights)
    return base


def build_model(config: TrainConfig) -> keras.Model:
    """uint8 [size, size, 1] pixels -> probability of abnormal, float32 even under mixed precision."""
    size = config.image_size
    pixels = keras.Input(shape=(size, size, 1), dtype=tf.uint8, name=features.PIXELS)
    x = tf.cast(pixels, tf.float32)
    x = augmentation(config)(x)
    x = tf.image.grayscale_to_rgb(x)
    x = x / 127.5 - 1.0  # ResNet50V2's input range, [-1, 1]
    base = resnet50v2_base(size, config.base_weights)
    base._name = BASE_NAME
    if config.base_weights == "none":
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.scratch_batchnorm_momentum
    # Pretrained BatchNorm statistics stay fixed (inference mode); a randomly initialised base must learn them.
    x = base(x, training=None if config.base_weights == "none" else False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(pixels, probability, name="mura_resnet50v2")


def set_phase(model: keras.Model, phase: str, unfreeze_top_layers: int = 0) -> None:
    """'head': base frozen. 'finetune': the top layers of the base trainable, BatchNorm frozen. 'all': everything."""
    base = model.get_layer(BASE_NAME)
    if phase == "all":
        base.trainable = True
        return
    if phase == "head":
        base.trainable = False
        return
    if phase != "finetune":
        raise ValueError(f"unknown training phase {phase!r}")
    base.trainable = True
    cut = len(base.layers) - unfreeze_top_layers
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
