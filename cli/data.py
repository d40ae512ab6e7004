"""Data commands: draw a synthetic MURA, import DICOM radiographs as one, audit a MURA root, ingest it through the
pipeline's first components."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import click
from tabulate import tabulate

from cli.options import quiet_tensorflow, with_settings
from mura.audit import format_rejections, pipeline_table, reasons_table, source_table
from mura.config import Settings
from mura.dicom_import import REASONS as DICOM_SKIP_REASONS
from mura.dicom_import import DicomImportError, import_dicom, mura_body_part, read_labels
from mura.layout import BODY_PARTS, DATASET_DIR, SOURCE_SPLITS
from mura.quality import DataQualityError, check_rejected_fraction
from mura.reader import MuraLayoutError, read_mura
from mura.synthetic.dataset import write_sample

DATA_FLAGS = (("data.eval_fraction", "--eval-fraction"), ("data.max_rejected_fraction", "--max-rejected-fraction"))


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write into.")
@click.option("--workers", type=click.IntRange(0), default=0, help="Processes drawing images; 0 = every core.")
@click.option("--force", is_flag=True, help=f"Replace an existing {DATASET_DIR}/ under --out.")
@with_settings(
    ("sample.studies_per_part", "--studies-per-part"),
    ("sample.seed", "--seed"),
    ("sample.max_side", "--max-side"),
    profile=False,
)
def sample(out: Path, workers: int, force: bool, settings: Settings) -> None:
    """Write a synthetic MURA-shaped data set in the exact MURA-v1.1 layout.

    Procedurally drawn radiographs per body part; abnormal studies carry a fracture, plate, nail, cast or lytic
    lesion, normal ones carry distractors (side markers, text, jewellery). Positive rates per body part follow
    MURA's. The real MURA cannot be redistributed: register with Stanford ML Group to download it.
    """
    target = out / DATASET_DIR
    if target.exists():
        if not force:
            raise click.ClickException(f"{target} already exists; pass --force to replace it.")
        shutil.rmtree(target)
    dataset_dir = write_sample(out, settings.sample, workers=workers)
    click.echo(f"Wrote a synthetic MURA to {dataset_dir}. Next: mura audit {out}")


@click.command("import-dicom")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"The root to write {DATASET_DIR}/ under; a root that holds one already is added to.",
)
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of StudyInstanceUID,label rows (1 = abnormal, 0 = normal; a header line is allowed).",
)
@click.option(
    "--split",
    type=click.Choice(SOURCE_SPLITS),
    default="train",
    show_default=True,
    help="MURA's split for the whole folder (valid is the pipeline's test split).",
)
@click.option(
    "--body-part",
    type=click.Choice([part.removeprefix("XR_").lower() for part in BODY_PARTS], case_sensitive=False),
    help="The body part of every file in the folder, instead of each file's BodyPartExamined.",
)
@with_settings(("dicom.max_side", "--max-side"), profile=False)
def import_dicom_command(
    src: Path, out: Path, labels: Path, split: str, body_part: str | None, settings: Settings
) -> None:
    """Turn a folder of DICOM radiographs into a MURA-v1.1 tree that `mura audit` and the pipeline read.

    Every file under SRC, whatever its name, is read: studies are grouped by StudyInstanceUID, patients by a hash
    of PatientID (never written in clear), the body part comes from BodyPartExamined (see the README's mapping)
    and the label from --labels. Files that are not converted are listed, with the reason, in
    OUT/dicom_skipped.csv. Import a train folder, then a valid folder, into the same OUT: a patient stays on one
    side.
    """
    try:
        summary = import_dicom(
            src,
            out,
            read_labels(labels),
            split=split,
            body_part=mura_body_part(body_part) if body_part else None,
            max_side=settings.dicom.max_side,
        )
    except DicomImportError as error:
        raise click.ClickException(str(error)) from None
    rows = []
    for part in BODY_PARTS:
        studies = [(key, images) for key, images in summary.studies if key.body_part == part]
        abnormal = sum(key.folder_label for key, _ in studies)
        rows.append([f"{split} {part}", len(studies), abnormal, sum(images for _, images in studies)])
    rows.append([f"{split} all", *(sum(row[column] for row in rows) for column in (1, 2, 3))])
    click.echo(f"\nConverted into {summary.dataset_dir}:\n")
    click.echo(tabulate(rows, headers=["", "studies", "abnormal studies", "images"]))
    if summary.skipped:
        reasons = Counter(skipped.reason for skipped in summary.skipped)
        table = [[reason, n, DICOM_SKIP_REASONS[reason]] for reason, n in reasons.most_common()]
        click.echo(f"\nSkipped files ({len(summary.skipped)}):\n")
        click.echo(tabulate(table, headers=["reason", "files", "meaning"]))
    click.echo(f"\nSkipped files listed in {summary.skipped_report}")
    if not summary.studies:
        raise click.ClickException(f"no study of {src} was converted; see {summary.skipped_report}")
    click.echo(f"Next: mura audit {out}")


@click.command()
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--rejected-report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected CSV row here as CSV (path,reason,detail,csv_file,line).",
)
@with_settings(*DATA_FLAGS, profile=False)
def audit(data_root: Path, rejected_report: Path | None, settings: Settings) -> None:
    """Check a MURA root: images per split and body part, what was rejected and why.

    Reads the four header-less CSVs and each image's header and end (not its pixels), so the full 40k-image MURA
    takes seconds. Every CSV row is either accepted or listed as rejected with a reason.
    """
    data = settings.data
    try:
        index = read_mura(data_root, data)
    except MuraLayoutError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"MURA root: {index.dataset_dir}\n")
    click.echo(source_table(index))
    click.echo(
        f"\nPipeline splits (patient-level, {data.eval_fraction:.0%} of train patients to eval; valid = test):\n"
    )
    click.echo(pipeline_table(index))
    rejected = index.rejected
    if rejected:
        click.echo(f"\nRejected rows ({len(rejected)}):\n")
        click.echo(reasons_table(rejected))
    if rejected_report:
        rejected_report.write_text(format_rejections(rejected))
        click.echo(f"\nRejected rows written to {rejected_report}")
    counts = (len(index.images), len(index.rejected_images), index.image_rows, data.max_rejected_fraction)
    try:
        summary = check_rejected_fraction(*counts, report=str(rejected_report) if rejected_report else None)
    except DataQualityError as error:
        hint = "" if rejected_report else " Re-run with --rejected-report FILE to list them."
        raise click.ClickException(f"{error}{hint}") from None
    click.echo(f"\n{summary}.")


@click.command()
@click.argument("data_root")
@click.option("--verbose", is_flag=True, help="Show TFX, Beam and TensorFlow logs.")
@with_settings(
    ("run.pipeline_root", "--output"),
    *DATA_FLAGS,
    ("data.drift_is_fatal", "--drift-is-fatal"),
    ("run.beam_args", "--beam-arg"),
    profile=False,
)
def ingest(data_root: str, verbose: bool, settings: Settings) -> None:
    """Ingest and validate a MURA root: ExampleGen, StatisticsGen, schema, ExampleValidator, with Beam.

    DATA_ROOT is the folder that holds MURA-v1.1/ (or MURA-v1.1/ itself): a local path or any URI TensorFlow
    can open (gs://...). Prints examples per split, rejected rows, anomalies and train/test drift; exits non-zero
    when the data is not fit to train on. Re-running on unchanged data reuses the earlier results (TFX cache).
    """
    import dataclasses

    quiet_tensorflow(verbose)
    from analysis.summaries import read_ingestion_summary  # TFX loads in seconds: only for the commands that run it
    from pipeline.run import run_ingestion

    settings = dataclasses.replace(settings, run=dataclasses.replace(settings.run, data_root=data_root))
    click.echo(f"Ingesting {data_root}: MuraExampleGen -> StatisticsGen -> ExampleValidator -> gate (Beam)")
    try:
        run_ingestion(settings)
    except (DataQualityError, MuraLayoutError) as error:
        raise click.ClickException(str(error)) from None
    summary = read_ingestion_summary(settings.run.metadata)
    rows = [[split, n] for split, n in summary.split_images.items()]
    click.echo("\n" + tabulate([*rows, ["all", sum(summary.split_images.values())]], headers=["split", "examples"]))
    click.echo(f"\nExamples: {summary.examples_uri}")
    click.echo(
        f"Rejected: {summary.rejected_images} of {summary.image_rows} image rows; report: {summary.rejected_report}"
    )
    anomalies = [f"{split}: {line}" for split, lines in summary.anomalies.items() for line in lines]
    click.echo("Anomalies: " + ("\n  ".join(["", *anomalies]) if anomalies else "none"))
    if summary.drift:
        drift = [[d["feature"], d["distance"], d["threshold"], "yes" if d["exceeded"] else "no"] for d in summary.drift]
        click.echo("\nDrift, train vs test (L-infinity):\n")
        click.echo(tabulate(drift, headers=["feature", "distance", "threshold", "exceeded"]))
