"""`mura drift`: compare what a server was asked about with what its model was trained on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from cli.options import quiet_tensorflow, with_settings
from mura.config import Settings

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from analysis.drift import Image

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
    from mura.request_log import read_request_log

    config = settings.drift
    log = read_request_log(str(requests_path))
    damage = []
    if log.torn_files:
        damage.append(f"{len(log.torn_files)} files end in a torn record (read up to it)")
    if log.unreadable_records:
        damage.append(f"{log.unreadable_records} records are not logged images (skipped)")
    click.echo(
        f"Request log {requests_path}: {len(log.images)} images in {log.files} files"
        + (f"; {'; '.join(damage)}" if damage else "")
    )
    try:
        outputs = find_run_outputs(settings.run.metadata, needs=("examples",)).require("examples")
        trained = training_images(outputs.split_uri("examples", "train"), config.train_sample)
        click.echo(f"Training split of {settings.run.pipeline_root}: {len(trained)} images sampled")
        with click.progressbar(length=len(log.images) + len(trained), label="Describing images") as bar:
            check = check_drift(
                [(image.image, image.body_part) for image in log.images], trained, config, _advance(bar)
            )
    except (DriftCheckError, LookupError, FileNotFoundError, ValueError, text_format.ParseError) as error:
        raise click.ClickException(str(error)) from None
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


def _advance(bar: ProgressBar) -> Callable[[Iterable[Image], str], Iterator[Image]]:
    """A progress callback for `check_drift`: advances the bar as each image is described."""

    def progress(images: Iterable[Image], _label: str) -> Iterator[Image]:
        for image in images:
            bar.update(1)
            yield image

    return progress
