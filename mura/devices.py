"""One decision for the hardware: which distribution strategy and which precision policy."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Placement:
    strategy: tf.distribute.Strategy
    precision: str  # a Keras mixed-precision policy name
    replicas: int


def choose_placement(gpus: list[str] | None = None) -> Placement:
    """All visible GPUs under MirroredStrategy with mixed float16; on CPU, the default strategy in float32."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")] if gpus is None else gpus
    if gpus:
        strategy = tf.distribute.MirroredStrategy(devices=gpus)
        return Placement(strategy, "mixed_float16", strategy.num_replicas_in_sync)
    return Placement(tf.distribute.get_strategy(), "float32", 1)
