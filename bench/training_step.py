"""Training step: images/s of one training step of the project's model on the CPU, at the demo and full
profiles' shapes, in the frozen-base ('head') and fine-tuning phases (and the demo's whole-network phase), beside
the model's FLOPs per image and the machine's measured matmul rate: the arithmetic limit.

The model is `mura.model.build_model`, its phase set by `mura.model.set_phase`, compiled as the Trainer compiles
it; the batch is random pixels in memory, so only the step is timed. Frozen and fine-tuning phases load base
weights from a file (random weights: speed does not depend on their values) so that BatchNorm runs in inference
mode as it does with ImageNet weights; the whole-network phase starts from `base_weights="none"` as the demo does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pipeline  # noqa: F401  (the pipeline's process settings, set before TensorFlow loads)
from bench import report
from mura.config import PROFILES, TrainConfig

NOTES = """
What bounds it. The limit counts only the convolution and dense FLOPs, at the rate of a large matmul. Profiled
with TensorFlow's profiler (a fine-tuning step at 64 px), before the pipeline turned oneDNN on: the gradients of
the conv5 blocks' convolutions (`Conv2DBackpropInput`, on 2x2 feature maps of 512 to 2,048 channels at 64 px) took
about 90 % of the step, some 50 times their FLOPs' worth. TensorFlow leaves oneDNN's kernels off on CPUs without
AVX-512, like this one, and its own convolution gradients are slow at such small spatial sizes; with
`TF_ENABLE_ONEDNN_OPTS=1` the same fine-tuning step ran 8x faster and the whole-network step 2x, so the pipeline's
processes now set it (`pipeline/__init__.py`), and this benchmark runs under it. What remains at 64 px: from conv4
on every feature map is 4x4 or 2x2, too small to keep the vector units busy, and BatchNorm, ReLU, the residual
adds and Adam's update of 23.5 M weights are memory-bound work the FLOP count leaves out. At 320 px the
convolutions are large enough to use the arithmetic units well. A frozen-base step is close to a forward pass.
"""
MATMUL_SIZE = 2048
FULL_BATCH = 8  # the full profile's batch of 64 takes about half a minute a step on 2 cores


def matmul_rate(seconds: float) -> float:
    """FLOP/s of float32 matrix multiplication, the best case for the CPU's arithmetic units."""
    import tensorflow as tf

    a = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE])
    b = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE])
    multiply = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    multiply().numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        multiply().numpy()
        count += 1
    return count * 2 * MATMUL_SIZE**3 / (time.perf_counter() - start)


def _layers(model):
    """Every leaf layer in order, with whether it is trained (a frozen parent freezes its children)."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            for child, trainable in _layers(layer):
                yield child, trainable and layer.trainable
        else:
            yield layer, layer.trainable


def layer_flops(layer) -> int:
    """Forward FLOPs per image of a convolution or dense layer (2 per multiply-add); 0 for the rest."""
    import numpy as np
    import tf_keras as keras

    if isinstance(layer, keras.layers.Conv2D):
        _, height, width, _ = layer.output_shape
        kernel = layer.kernel.shape  # kh, kw, cin, cout
        return 2 * height * width * int(np.prod(kernel))
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(np.prod(layer.kernel.shape))
    return 0


def training_flops(model) -> tuple[int, int]:
    """(forward, training step) FLOPs per image. A trained layer's backward pass costs twice its forward (the
    gradients of its input and of its weights); a frozen layer above a trained one, once (its input's)."""
    costs = [(layer_flops(layer), trainable and bool(layer.weights)) for layer, trainable in _layers(model)]
    forward = sum(flops for flops, _ in costs)
    lowest = next((i for i, (_, trained) in enumerate(costs) if trained), len(costs))
    backward = sum((2 if trained else 1) * flops for flops, trained in costs[lowest:])
    return forward, forward + backward


def step_rate(config: TrainConfig, phase: str, steps: int) -> tuple[float, int, int]:
    """(images/s of the median step, forward FLOPs, training FLOPs per image) of one phase at one shape."""
    import numpy as np
    import tf_keras as keras

    from components.modules.trainer import compile_model
    from mura import features
    from mura.model import build_model, set_phase

    keras.backend.clear_session()
    model = build_model(config)
    set_phase(model, phase, config.unfreeze_top_layers)
    compile_model(model, config, config.finetune_learning_rate)
    rng = np.random.default_rng(0)
    size, batch = config.image_size, config.batch_size
    pixels = {features.PIXELS: rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8)}
    labels = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    weights = np.ones(batch, np.float32)
    model.train_on_batch(pixels, labels, sample_weight=weights)  # traced here
    times = [report.timed(lambda: model.train_on_batch(pixels, labels, sample_weight=weights)) for _ in range(steps)]
    forward, training = training_flops(model)
    return batch / report.median(times), forward, training


def pretrained_file(workdir: Path) -> str:
    """A ResNet50V2 weights file without its top, as `base_weights` takes for ImageNet's (random values)."""
    import tf_keras as keras

    path = workdir / "resnet50v2_notop_random.h5"
    if not path.exists():
        keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(path)
    return str(path)


def run(workdir: Path, quick: bool) -> report.Section:
    weights_file = pretrained_file(workdir)
    demo = PROFILES["demo"]
    full = dataclasses.replace(PROFILES["full"], batch_size=FULL_BATCH)
    cases = [
        ("demo", "all", demo, 2),
        ("demo", "head", dataclasses.replace(demo, base_weights=weights_file), 2),
        ("demo", "finetune", dataclasses.replace(demo, base_weights=weights_file), 2),
        ("full", "head", dataclasses.replace(full, base_weights=weights_file), 2),
        ("full", "finetune", dataclasses.replace(full, base_weights=weights_file), 2),
    ]
    if quick:
        tiny = dataclasses.replace(demo, image_size=32, batch_size=4)
        cases = [("quick", "all", tiny, 1), ("quick", "head", dataclasses.replace(tiny, base_weights=weights_file), 1)]

    section = report.Section(
        key="training_step",
        title="Training step on the CPU against the arithmetic limit",
        setup=(
            "One `train_on_batch` of the project's model (ResNet50V2 base, augmentation, head), compiled as the "
            "Trainer compiles it, on random pixels in memory; the median of a few steps after a first (traced) "
            f"one. The full profile's shape with a batch of {FULL_BATCH} instead of 64, to fit the time. The "
            f"arithmetic limit: the matmul rate ({MATMUL_SIZE}x{MATMUL_SIZE} float32 `tf.matmul`, measured in the "
            "same run, right after each case) divided by the step's FLOPs per image, counted from the model's "
            "convolution and dense "
            "layers (2 FLOPs per multiply-add; a trained layer's backward pass costs twice its forward, a frozen "
            "layer above a trained one once)."
        ),
        notes=NOTES,
    )
    rows = []
    for profile, phase, config, steps in cases:
        rate, forward, training = step_rate(config, phase, steps)
        flops_per_second = matmul_rate(seconds=1.0 if quick else 2.0)  # right after the step: the same conditions
        limit = flops_per_second / training
        shape = f"{profile} {config.image_size} px, batch {config.batch_size}, {phase}"
        section.comparisons.append(report.Comparison(shape, rate, limit, "arithmetic limit", "img/s"))
        rows.append(
            [
                profile,
                config.image_size,
                config.batch_size,
                phase,
                report.fmt(forward / 1e9),
                report.fmt(training / 1e9),
                report.fmt(flops_per_second / 1e9),
                report.fmt(rate),
            ]
        )
    section.tables = [
        (
            "Every measurement",
            ["profile", "size", "batch", "phase", "forward GFLOP/img", "step GFLOP/img", "matmul GFLOP/s", "images/s"],
            rows,
        )
    ]
    return section


if __name__ == "__main__":
    report.main(run, __doc__)
