"""Grad-CAM (Selvaraju et al.): where in an image the last feature layer holds the evidence for "abnormal".

Computed on the Keras model the pipeline exported, so a reviewer sees what the served model looks at.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mura.model import BASE_NAME, GRADCAM_LAYER


def load_model(saved_model_dir: str) -> keras.Model:
    return keras.models.load_model(saved_model_dir, compile=False)


def heatmaps(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    """uint8 [n, size, size, 1] pixels -> [n, size, size] heatmaps in [0, 1] (all zero where nothing points up)."""
    base = model.get_layer(BASE_NAME)
    if base.layers[-1].name != GRADCAM_LAYER:
        raise ValueError(f"the model's base does not end in {GRADCAM_LAYER!r}: Grad-CAM needs its feature map")
    # The base's output node inside this model (the last one: a loaded model has only this call).
    split = keras.Model(model.inputs, [base.get_output_at(-1), model.output])
    with tf.GradientTape() as tape:
        features, probability = split(pixels, training=False)
    gradients = tape.gradient(probability, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # one weight per channel
    cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., tf.newaxis]
    cams = tf.image.resize(cams, pixels.shape[1:3], method="bilinear")[..., 0].numpy()
    peaks = cams.reshape(len(cams), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0)
