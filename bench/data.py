"""The synthetic MURA the benchmarks share: drawn once per work folder, reused by every benchmark run there."""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mura.config import SampleConfig
from mura.layout import image_paths_csv
from mura.synthetic.dataset import plan_dataset, write_sample

# make demo's longest side: MURA's 512 would quadruple drawing time for every benchmark.
MAX_SIDE = 256
FULL_STUDIES_PER_PART = 208  # 5,062 images, the ingestion benchmark's floor
QUICK_STUDIES_PER_PART = 8


def sample_config(quick: bool, studies_per_part: int | None = None) -> SampleConfig:
    studies = studies_per_part or (QUICK_STUDIES_PER_PART if quick else FULL_STUDIES_PER_PART)
    return SampleConfig(studies_per_part=studies, seed=0, max_side=MAX_SIDE)


def image_count(config: SampleConfig) -> int:
    return sum(spec.images for spec in plan_dataset(config))


def synthetic_tree(workdir: Path, config: SampleConfig) -> Path:
    """The root that holds MURA-v1.1/, drawn on every core the first time."""
    root = workdir / f"mura-{config.studies_per_part}x{config.max_side}"
    done = root / ".complete"
    if not done.exists():
        write_sample(root, config, progress=False)
        done.touch()
    return root


def image_files(root: Path, split: str = "train") -> list[Path]:
    """The images of one MURA split, in CSV order."""
    with (root / "MURA-v1.1" / image_paths_csv(split)).open() as handle:
        return [root / row[0] for row in csv.reader(handle)]


def evict_from_page_cache(files: list[Path]) -> None:
    """Drops these files (and only these) from the page cache, so the next read comes from the disk."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_all(files: list[Path], threads: int) -> list[bytes]:
    """Every file's bytes, read by `threads` threads (file reads release the GIL)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(Path.read_bytes, files))


def decode_rate(images: list[bytes], seconds: float = 0.0) -> float:
    """Images/s of decoding encoded PNG/JPEG bytes (from memory) on every core: the decode limit.

    tf.data's map runs TensorFlow's decoder (the one Transform and serving use) on one thread per core, with
    nothing else in the loop; the set is repeated until at least `seconds` have passed.
    """
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0))
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: tf.shape(tf.io.decode_image(image, channels=1, expand_animations=False)),
        num_parallel_calls=cores,
        deterministic=False,
    )
    for _ in dataset.take(cores * 4):  # threads started, kernels loaded
        pass
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        for _ in dataset:
            count += 1
    return count / (time.perf_counter() - start)
