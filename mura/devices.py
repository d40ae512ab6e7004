"""One decision for the hardware: which distribution strategy and which precision policy."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Placement:
    strategy: tf.distribute.Strategy
    precision: str  # a Keras mixed-precision policy name
    replicas: int


def choose_placement(accelerators: list[str] | None = None) -> Placement:
    """All visible GPUs under MirroredStrategy with mixed float16; on CPU, the default strategy in float32.

    `accelerators` overrides the devices found (tests mirror over the CPU to prove the GPU path).
    """
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] if accelerators is None else accelerators
    if devices:
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Placement(strategy, "mixed_float16", strategy.num_replicas_in_sync)
    return Placement(tf.distribute.get_strategy(), "float32", 1)
