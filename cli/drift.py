"""`mura drift`: compare what a server was asked about with what its model was trained on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from cli.options import quiet_tensorflow, with_settings
from mura.config import Settings

if TYPE_CHECKING:
    from analysis.drift import Image
    from mura.request_log import RequestLog

# Exit codes, for scripts and schedulers: nothing drifted; a feature drifted beyond its threshold.
NO_DRIFT, DRIFTED = 0, 3


@click.command()
@click.option(
    "--requests",
    "requests_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The request log: the folder `mura serve --request-log-dir` writes (or one of its files).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("drift"),
    show_default=True,
    help="Folder for drift.html, its figure, drift.json, and TFDV's statistics and schema.",
)
@click.option(
    "--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the verdict here."
)
@with_settings(
    ("run.pipeline_root", "--pipeline-root"),
    ("run.metadata_path", "--metadata-path"),
    ("drift.schema_file", "--schema"),
    ("drift.numeric_threshold", "--numeric-threshold"),
    ("drift.categorical_threshold", "--categorical-threshold"),
    ("drift.train_sample", "--train-sample"),
    ("drift.min_requests", "--min-requests"),
    profile=False,
)
def drift(requests_path: Path, out: Path, json_file: Path | None, settings: Settings) -> None:
    """Check whether the images a server was asked about still look like the training split of a pipeline run.

    Describes each logged image and a sample of the run's training images the same way (height, width, aspect
    ratio, channels, mean and spread of the gray levels, a 16 x 16 grid of gray levels, and the body part when the
    requests gave one), computes TFDV statistics of both, and compares them with TFDV's skew comparators against
    the schema's thresholds (Jensen-Shannon divergence for numbers, L-infinity distance for categories).

    Exit codes: 0 nothing drifted, 3 a feature drifted (each is named), 1 the check could not judge (too few
    logged images, no run), 2 wrong settings or flags.
    """
    quiet_tensorflow(verbose=False)
    from google.protobuf import text_format

    from analysis.drift import DriftCheckError, check_drift, summary, training_images, write_drift
    from analysis.run_outputs import find_run_outputs
    from mura.request_log import RequestLog, stream_request_log

    config = settings.drift
    log = RequestLog()
    served = ((image.image, image.body_part) for image in stream_request_log(str(requests_path), log))
    try:
        outputs = find_run_outputs(settings.run.metadata, needs=("examples",)).require("examples")
        trained = training_images(outputs.split_uri("examples", "train"), config.train_sample)
        click.echo(f"Training split of {settings.run.pipeline_root}: {len(trained)} images sampled")
        check = check_drift(served, trained, config, _with_progress)
    except (DriftCheckError, LookupError, FileNotFoundError, ValueError, text_format.ParseError) as error:
        if log.files:
            _echo_log(requests_path, log)
        raise click.ClickException(str(error)) from None
    _echo_log(requests_path, log)
    rows = [
        [row.feature, row.comparator, f"{row.value:.3f}", f"{row.threshold:g}", "DRIFTED" if row.drifted else "ok"]
        for row in check.features
    ]
    headers = ["feature", "comparator", "value", "threshold", "verdict"]
    click.echo("\n" + tabulate(rows, headers=headers, disable_numparse=True))
    for note in check.notes:
        click.echo(f"Note: {note}.")
    page = write_drift(check, out, str(requests_path), settings.run.pipeline_root)
    if json_file:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(summary(check), indent=2))
    click.echo(f"\nPage with the distributions side by side: {page}")
    if check.drifted:
        for feature in check.drifted:
            click.echo(f"Drifted: {feature}: {check.anomalies[feature]}", err=True)
        raise SystemExit(DRIFTED)
    click.echo(f"No drift: every feature is within the schema's thresholds ({check.served_images} images).")


def _with_progress(images: Iterable[Image], label: str) -> Iterator[Image]:
    """A progress bar over the images `check_drift` describes: a count for the log (read as it goes), a bar for
    the training sample."""
    with click.progressbar(images, label=f"Describing {label}") as bar:
        yield from bar


def _echo_log(requests_path: Path, log: RequestLog) -> None:
    damage = []
    if log.torn_files:
        damage.append(f"{len(log.torn_files)} files end in a torn record (read up to it)")
    if log.unreadable_records:
        damage.append(f"{log.unreadable_records} records are not logged images (skipped)")
    click.echo(
        f"Request log {requests_path}: {log.read} images in {log.files} files"
        + (f"; {'; '.join(damage)}" if damage else "")
    )
