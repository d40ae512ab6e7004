"""Ingestion: images/s of the MURA ExampleGen on a synthetic tree of 5,000 images, against reading the same
bytes from disk (the I/O limit) and decoding them on every core (the decode limit: ExampleGen decodes every
image once, to prove it decodes).

The ExampleGen runs as the pipeline runs it (BeamDagRunner, Beam's DirectRunner with the default one worker),
alone in a pipeline of its own; its time is its execution's in ML Metadata. Before each measurement the tree's
files are dropped from the page cache (posix_fadvise, on these files only), so every figure reads from the disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench import report
from bench.data import decode_rate, evict_from_page_cache, image_files, read_all, sample_config, synthetic_tree
from mura.layout import SOURCE_SPLITS

DEFAULT_BEAM_ARGS = ("--direct_num_workers=1",)  # RunConfig's default
TWO_WORKERS_BEAM_ARGS = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")


def run_example_gen(root: Path, pipeline_root: Path, beam_args: tuple[str, ...]) -> float:
    """Seconds of MuraExampleGen's execution on `root`, as ML Metadata recorded it."""
    from tfx import v1 as tfx
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from components.mura_example_gen.component import MuraExampleGen
    from mura.config import DataConfig
    from pipeline.metadata import latest_execution, open_store

    metadata = str(pipeline_root / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="bench-ingestion",
        pipeline_root=str(pipeline_root),
        components=[MuraExampleGen(data_root=str(root), config=DataConfig())],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata),
        beam_pipeline_args=list(beam_args),
    )
    BeamDagRunner().run(pipeline)
    execution = latest_execution(open_store(metadata), "MuraExampleGen")
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def per_image_work_rate(root: Path, output: Path) -> float:
    """Images/s of ExampleGen's own work per image without Beam, on one core: read the file, decode it (the
    check), build and serialize the tf.Example, write it gzipped. What one Beam worker could reach at best."""
    import tensorflow as tf

    from mura.config import DataConfig
    from mura.examples import decoded_shape, to_example
    from mura.reader import read_mura

    index = read_mura(str(root), DataConfig(), progress=False)
    start = time.perf_counter()
    with tf.io.TFRecordWriter(str(output), options="GZIP") as writer:
        for record in index.images:
            image = Path(record.path).read_bytes()
            decoded_shape(image)
            writer.write(to_example(record, image).SerializeToString())
    return len(index.images) / (time.perf_counter() - start)


def run(workdir: Path, quick: bool) -> report.Section:
    config = sample_config(quick)
    root = synthetic_tree(workdir, config)
    files = [path for split in SOURCE_SPLITS for path in image_files(root, split)]
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    threads = 4 * len(os.sched_getaffinity(0))

    evict_from_page_cache(files)
    start = time.perf_counter()
    images = read_all(files, threads)
    cold_read = time.perf_counter() - start
    warm_read = report.timed(lambda: read_all(files, threads))
    decode = decode_rate(images, seconds=2.0)

    evict_from_page_cache(files)
    work = per_image_work_rate(root, workdir / "examples-without-beam.tfrecord.gz")

    rates = {}
    for name, beam_args in (("default", DEFAULT_BEAM_ARGS), ("two_workers", TWO_WORKERS_BEAM_ARGS)):
        evict_from_page_cache(files)
        seconds = run_example_gen(root, workdir / f"ingestion-{name}-{time.time_ns()}", beam_args)
        rates[name] = len(files) / seconds

    io_limit = len(files) / cold_read
    section = report.Section(
        key="ingestion",
        title="Ingestion: MURA ExampleGen",
        setup=(
            f"A synthetic MURA of {len(files):,} images ({megabytes:.0f} MB of PNG, longest side "
            f"{config.max_side} px), every split. The I/O limit reads every file from the disk (dropped from the "
            f"page cache first) with {threads} threads; the decode limit decodes every image from memory with "
            "TensorFlow's decoder on every core. ExampleGen runs alone under BeamDagRunner, its time from ML "
            "Metadata, also from a cold page cache."
        ),
    )
    section.comparisons = [
        report.Comparison("ExampleGen vs the I/O limit", rates["default"], io_limit, "read from disk", "img/s", 0.5),
        report.Comparison("ExampleGen vs the decode limit", rates["default"], decode, "decode, all cores", "img/s"),
        report.Comparison(
            "ExampleGen vs its own per-image work without Beam", rates["default"], work, "1 core, no Beam", "img/s"
        ),
        report.Comparison(
            "ExampleGen, 2 Beam worker processes, vs 1", rates["two_workers"], rates["default"], "1 worker", "img/s"
        ),
    ]
    section.tables = [
        (
            "Every measurement",
            ["what", "images/s", "MB/s"],
            [
                [what, report.fmt(rate), report.fmt(rate * megabytes / len(files))]
                for what, rate in (
                    ("read from disk (cold page cache)", io_limit),
                    ("read from the page cache", len(files) / warm_read),
                    ("decode from memory, all cores", decode),
                    ("ExampleGen's per-image work without Beam, 1 core (cold page cache)", work),
                    ("ExampleGen, DirectRunner, 1 worker (the default)", rates["default"]),
                    ("ExampleGen, DirectRunner, 2 worker processes", rates["two_workers"]),
                )
            ],
        )
    ]
    return section


if __name__ == "__main__":
    report.main(run, __doc__)
