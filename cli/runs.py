"""Pipeline commands: run it, read what a run produced (tables, report), and show the settings a run would use."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from cli.options import quiet_tensorflow, with_settings
from mura.config import Settings
from mura.quality import DataQualityError
from mura.reader import MuraLayoutError
from mura.settings import format_value, setting_fields
from mura.tables import column_table

if TYPE_CHECKING:
    from analysis.summaries import PipelineSummary


@click.group()
def pipeline() -> None:
    """Run the whole TFX pipeline: ingestion, validation, Transform, Trainer, study evaluation, push."""


# `mura pipeline run`'s exit codes, for scripts: a push, a refusal by the gate, a run that failed.
PUSHED, REFUSED, FAILED = 0, 3, 4


@pipeline.command("run")
@click.option("--verbose", is_flag=True, help="Show every TFX, Beam and TensorFlow log line instead of the progress.")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the summary here: both tables, the verdict, where the model went or what stopped it.",
)
@with_settings(
    ("run.data_root", "--data-root"),
    ("run.pipeline_root", "--pipeline-root"),
    ("run.serving_root", "--serving-root"),
    ("serving.model_name", "--model-name"),
    ("gate.study_kappa_floor", "--kappa-floor"),
    ("gate.auc_floor", "--auc-floor"),
    ("gate.body_part_auc_floor", "--body-part-auc-floor"),
    ("gate.auc_min_change", "--auc-min-change"),
    ("run.beam_args", "--beam-arg"),
)
def pipeline_run(verbose: bool, json_file: Path | None, settings: Settings) -> None:
    """Run ExampleGen -> validation -> Transform -> Trainer -> TFMA and study evaluation -> push, locally with Beam.

    A model is pushed only when TFMA's thresholds (AUC floors, and no worse than the model being served) and
    the study-level kappa floor all pass. Prints each component as it runs and one line per training epoch, then
    TFMA's image-level table, MURA's study-level table (kappa and AUROC per body part, with the paper's values
    beside them), and where the model went, or why it did not.

    Exit codes: 0 a model was pushed, 3 the gate refused the model, 4 the run failed (bad data, a failed
    component), 2 wrong settings or flags.
    """
    quiet_tensorflow(verbose)
    from analysis.summaries import read_pipeline_summary
    from cli.progress import show_progress
    from pipeline.run import run_pipeline

    run = settings.run
    click.echo(
        f"Running the pipeline on {run.data_root} with the {settings.profile} profile (Beam, {run.pipeline_root})"
    )
    progress = None if verbose else show_progress(click.echo)
    started = time.monotonic()
    try:
        run_pipeline(settings)
    except (DataQualityError, MuraLayoutError) as error:
        _fail(str(error), json_file)
    except Exception as error:  # a component failed: say which, and where its full log is
        where = f" in {progress.current}" if progress and progress.current else ""
        hint = "" if verbose else " (run again with --verbose for every log line)"
        _fail(f"the pipeline failed{where}: {type(error).__name__}: {error}{hint}", json_file)
    summary = read_pipeline_summary(run.metadata)
    _print_results(summary)
    click.echo(f"\nThe whole run took {time.monotonic() - started:.0f} s.")
    if json_file:
        _write_json(json_file, {"verdict": "pushed" if summary.pushed_to else "refused", **asdict(summary)})
    if not summary.pushed_to:
        raise SystemExit(REFUSED)


def _fail(message: str, json_file: Path | None) -> None:
    if json_file:
        _write_json(json_file, {"verdict": "failed", "error": message})
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(FAILED)


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, default=str) + "\n")


def _print_results(summary: PipelineSummary) -> None:
    from analysis.tfma_results import IMAGE_COLUMNS
    from mura.study_metrics import STUDY_COLUMNS

    click.echo("\nImage-level results on the test split (TFMA):\n")
    click.echo(column_table(summary.image_table, IMAGE_COLUMNS))
    click.echo("\nStudy-level results on the test split (kappa: Cohen's, at each body part's operating point):\n")
    click.echo(column_table(summary.table, STUDY_COLUMNS))
    if summary.bootstrap_samples:
        click.echo(f"95 % CI: percentile interval over {summary.bootstrap_samples} bootstrap resamples of the studies.")
    click.echo(f"\nOfficial-format predictions: {summary.official_predictions}")
    click.echo(f"TFMA evaluation (for notebooks): {summary.evaluation_dir}")
    if summary.model_card:
        click.echo(f"Model card: {summary.model_card}")
    gate = summary.study_gate
    if summary.pushed_to:
        click.echo(f"Pushed to {summary.pushed_to} (TFMA blessed it; {gate.reason()}).")
        return
    click.echo("Not pushed:")
    for failure in summary.tfma_failures:
        click.echo(f"  TFMA: {failure}")
    if not gate.blessed:
        click.echo(f"  {gate.reason()}")


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Folder for index.html and its PNG figures.",
)
@click.option(
    "--cases", type=click.IntRange(0), default=2, show_default=True, help="Worst misreads shown per body part and kind."
)
@with_settings(("run.pipeline_root", "--pipeline-root"), ("run.metadata_path", "--metadata-path"), profile=False)
def report(out: Path, cases: int, settings: Settings) -> None:
    """Write a static HTML report of the latest run: study-level kappa and AUROC per body part beside the MURA
    paper, ROC curves, reliability diagram and confusion matrices per body part (TFMA), the gate's verdict, and
    the worst false negatives and false positives per body part with Grad-CAM heatmaps from the pushed model.
    """
    quiet_tensorflow(verbose=False)
    from analysis.report import write_report
    from analysis.run_outputs import find_run_outputs

    try:
        page = write_report(find_run_outputs(settings.run.metadata), out, cases)
    except (LookupError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Report written to {page} (open it in a browser; the figures are PNG files beside it).")


@click.command("settings")
@with_settings()
def settings(settings: Settings) -> None:
    """List every setting: its value (after the profile, settings files, MURA_* variables and --set), its
    environment variable and what it means."""
    rows = [[f.key, format_value(f.default), f.variable, f.help] for f in setting_fields(settings)]
    click.echo(f"Profile: {settings.profile} (--profile, MURA_PROFILE, or `profile = ...` in a settings file)\n")
    click.echo(tabulate(rows, headers=["setting", "value", "environment variable", "meaning"]))
