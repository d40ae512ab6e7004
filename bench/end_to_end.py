"""End to end: wall time of the whole pipeline (`mura pipeline run`'s `run_pipeline`) on the demo profile's
model, broken down by component from ML Metadata's execution times, so the slowest step is visible.

To fit the benchmark's time, the run uses a smaller synthetic sample and fewer epochs than `make demo
DEMO_PROFILE=demo`, and opens the promotion gate's floors as `make demo` does (an untrained model would
otherwise stop before the push, which then would not be measured). Image size, batch size, model and every
component are the demo profile's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pipeline  # noqa: F401  (the pipeline's process settings, set before TensorFlow loads)
from bench import report
from bench.data import image_count, sample_config, synthetic_tree
from mura.config import PROFILES, GateConfig, RunConfig, Settings

NOTES = """
Reading the figures. The Trainer's time holds building ResNet50V2, tracing the training and evaluation steps, the
epochs, the evaluation passes and the export with its two serving signatures; without ImageNet weights the demo
trains the whole network from scratch at the whole-network rate of the training step section, so its share
grows with every epoch (the demo profile runs 10, and early stopping may end it sooner). The Beam components
(ExampleGen, StatisticsGen, Transform, Evaluator) run on the DirectRunner's one worker; their costs grow with the
number of images, the Trainer's with images times epochs.
"""
STUDIES_PER_PART = 12  # make demo draws 40
EPOCHS = 2  # the demo profile trains 10
OPEN_GATE = GateConfig(study_kappa_floor=-1.0, auc_floor=0.0)  # make demo's DEMO_GATE


def component_seconds(metadata_path: str) -> list[tuple[str, float]]:
    """(component, seconds) of every execution in the run, in the order they ran."""
    from analysis.metadata import component_name, execution_seconds, open_store

    store = open_store(metadata_path)
    return [
        (component_name(execution), execution_seconds(execution))
        for execution in sorted(store.get_executions(), key=lambda e: e.create_time_since_epoch)
    ]


def run(workdir: Path, quick: bool) -> report.Section:
    from analysis.summaries import read_pipeline_summary
    from pipeline.run import run_pipeline

    sample = sample_config(quick, None if quick else STUDIES_PER_PART)
    root = synthetic_tree(workdir, sample)
    train = dataclasses.replace(PROFILES["demo"], finetune_epochs=EPOCHS)
    if quick:
        train = dataclasses.replace(train, finetune_epochs=1, steps_per_epoch=2, eval_steps=1)
    run_config = RunConfig(data_root=str(root), pipeline_root=str(workdir / f"pipeline-{time.time_ns()}"))
    start = time.perf_counter()
    run_pipeline(Settings(run=run_config, train=train, gate=OPEN_GATE))
    wall = time.perf_counter() - start
    summary = read_pipeline_summary(run_config.metadata)
    components = component_seconds(run_config.metadata)
    slowest, slowest_seconds = max(components, key=lambda item: item[1])
    orchestration = wall - sum(seconds for _, seconds in components)

    section = report.Section(
        key="end_to_end",
        title="End to end: the whole pipeline on the demo profile",
        setup=(
            f"`run_pipeline` (what `mura pipeline run` calls; BeamDagRunner, DirectRunner with 1 worker) on a "
            f"synthetic MURA of {image_count(sample):,} images (`--studies-per-part {sample.studies_per_part} "
            f"--max-side {sample.max_side}`), the demo profile ({train.image_size} px, batch {train.batch_size}, "
            f"ResNet50V2 from random weights, the whole network trained) for {train.finetune_epochs} epoch(s) "
            f"instead of {PROFILES['demo'].finetune_epochs}"
            + (f", {train.steps_per_epoch} steps each" if train.steps_per_epoch else "")
            + ", and the gate's floors opened as `make demo` opens them, so the push runs too"
            + f" (pushed: {'yes' if summary.pushed_to else 'no'}). Component times are ML Metadata's (from the "
            "execution's creation to its last update); orchestration is the rest of the wall time."
        ),
        notes=NOTES,
        comparisons=[report.Comparison(f"slowest component ({slowest})", slowest_seconds, wall, "whole run", "s")],
    )
    rows = [[name, report.fmt(seconds), f"{100 * seconds / wall:.0f} %"] for name, seconds in components]
    rows += [
        ["orchestration (TFX, Beam, imports)", report.fmt(orchestration), f"{100 * orchestration / wall:.0f} %"],
        ["**whole run (wall)**", report.fmt(wall), "100 %"],
    ]
    section.tables = [("By component, in the order they ran", ["component", "seconds", "share"], rows)]
    return section


if __name__ == "__main__":
    report.main(run, __doc__)
