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

import pipeline  # noqa: F401  (the pipeline's process settings, set before TensorFlow loads)
from bench import report
from bench.data import decode_rate, evict_from_page_cache, image_files, read_all, sample_config, synthetic_tree
from mura.layout import SOURCE_SPLITS

NOTES = """
What bounds it. Half the disk's rate is out of reach for any ExampleGen that decodes every image, and this one
must: an image that does not decode is rejected at ingestion with a reason, not discovered by Transform. Decoding
alone, on every core and from memory, runs at a fraction of the disk's rate (the first and third rows), so the
decode limit, not the I/O limit, is the ceiling. ExampleGen also runs on one Beam worker (the DirectRunner's
default), so it gets one core. A cProfile of ExampleGen on this sample during development (5,062 images, one
worker) split its executor's time: decoding 13 %, reading the files 12 %, gzip compression of the output
TFRecords 19 %, building the tf.Examples 3 %, the reader's pass over the CSVs and image headers 6 %, and about half
in Beam's per-element machinery (Create with reshuffle, the partition by split, coders, bundles); the "without
Beam" row is the same per-image work in a plain loop. Beam's multi-processing mode with 2 worker processes
(`--direct_num_workers=2 --direct_running_mode=multi_processing`) was slower at this size when measured during
development (82 against 149 images/s): starting the workers and moving every record between processes cost more
than the second core gave. More throughput comes from more workers on more machines (Dataflow, Flink or Spark
through `--beam-arg`), which the component already supports.
"""


def run_example_gen(root: Path, pipeline_root: Path) -> float:
    """Seconds of MuraExampleGen's execution on `root` (Beam arguments: the pipeline's defaults), from ML
    Metadata."""
    from tfx import v1 as tfx
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from analysis.metadata import execution_seconds, latest_execution, open_store
    from components.mura_example_gen.component import MuraExampleGen
    from mura.config import DataConfig, RunConfig

    run = RunConfig(data_root=str(root), pipeline_root=str(pipeline_root))
    metadata = run.metadata
    ingestion_only = tfx.dsl.Pipeline(
        pipeline_name="bench-ingestion",
        pipeline_root=str(pipeline_root),
        components=[MuraExampleGen(data_root=str(root), config=DataConfig())],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata),
        beam_pipeline_args=list(run.beam_args),
    )
    BeamDagRunner().run(ingestion_only)
    execution = latest_execution(open_store(metadata), "MuraExampleGen")
    return execution_seconds(execution)


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

    evict_from_page_cache(files)
    example_gen = len(files) / run_example_gen(root, workdir / f"ingestion-{time.time_ns()}")

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
        notes=NOTES,
    )
    section.comparisons = [
        report.Comparison("ExampleGen vs the I/O limit", example_gen, io_limit, "read from disk", "img/s", 0.5),
        report.Comparison("ExampleGen vs the decode limit", example_gen, decode, "decode, all cores", "img/s"),
        report.Comparison(
            "ExampleGen vs its own per-image work without Beam", example_gen, work, "1 core, no Beam", "img/s"
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
                    ("ExampleGen, DirectRunner, 1 worker (the default)", example_gen),
                )
            ],
        )
    ]
    return section


if __name__ == "__main__":
    report.main(run, __doc__)
