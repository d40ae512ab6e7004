"""The `mura` command: one entry point for everything a user does with the pipeline."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from mura.audit import format_rejections, pipeline_table, reasons_table, source_table
from mura.config import (
    PROFILES,
    DataConfig,
    GateConfig,
    KubeflowConfig,
    RunConfig,
    SampleConfig,
    ServingConfig,
    TrainConfig,
    metadata_location,
)
from mura.filesystem import absolute
from mura.layout import DATASET_DIR
from mura.quality import DataQualityError, check_rejected_fraction
from mura.reader import MuraLayoutError, read_mura

if TYPE_CHECKING:
    from pipeline.run import PipelineSummary
from mura.synthetic.dataset import write_sample

_DATA = DataConfig()
_SAMPLE = SampleConfig()
_SERVING = ServingConfig()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Bone X-ray abnormality detection on MURA: data, pipeline, serving.

    Start with `mura sample --out data` for a synthetic MURA-shaped data set, or point the other commands at a
    real MURA-v1.1 download (the folder that holds MURA-v1.1/).
    """


def _data_options(command: Callable) -> Callable:
    """--max-rejected-fraction and --eval-fraction, with DataConfig's defaults."""
    command = click.option(
        "--eval-fraction",
        type=click.FloatRange(0.0, 1.0, max_open=True),
        default=_DATA.eval_fraction,
        show_default=True,
        help="Share of train patients carved out as the eval split.",
    )(command)
    return click.option(
        "--max-rejected-fraction",
        type=click.FloatRange(0.0, 1.0),
        default=_DATA.max_rejected_fraction,
        show_default=True,
        help="Exit non-zero when more than this share of image rows is rejected.",
    )(command)


@main.command()
@click.argument("data_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--rejected-report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected CSV row here as CSV (path,reason,detail,csv_file,line).",
)
@_data_options
def audit(data_root: Path, rejected_report: Path | None, max_rejected_fraction: float, eval_fraction: float) -> None:
    """Check a MURA root: images per split and body part, what was rejected and why.

    Reads the four header-less CSVs and each image's header (not its pixels), so the full 40k-image MURA takes
    seconds. Every CSV row is either accepted or listed as rejected with a reason.
    """
    config = DataConfig(eval_fraction=eval_fraction, max_rejected_fraction=max_rejected_fraction)
    try:
        index = read_mura(data_root, config)
    except MuraLayoutError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"MURA root: {index.dataset_dir}\n")
    click.echo(source_table(index))
    click.echo(f"\nPipeline splits (patient-level, {eval_fraction:.0%} of train patients to eval; valid = test):\n")
    click.echo(pipeline_table(index))
    rejected = index.rejected
    if rejected:
        click.echo(f"\nRejected rows ({len(rejected)}):\n")
        click.echo(reasons_table(rejected))
    if rejected_report:
        rejected_report.write_text(format_rejections(rejected))
        click.echo(f"\nRejected rows written to {rejected_report}")
    counts = (len(index.images), len(index.rejected_images), index.image_rows, max_rejected_fraction)
    try:
        summary = check_rejected_fraction(*counts, report=str(rejected_report) if rejected_report else None)
    except DataQualityError as error:
        hint = "" if rejected_report else " Re-run with --rejected-report FILE to list them."
        raise click.ClickException(f"{error}{hint}") from None
    click.echo(f"\n{summary}.")


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write into.")
@click.option(
    "--studies-per-part",
    type=click.IntRange(1),
    default=_SAMPLE.studies_per_part,
    show_default=True,
    help="Train studies per body part; valid gets a quarter of that (at least 2).",
)
@click.option("--seed", type=int, default=_SAMPLE.seed, show_default=True, help="Same seed, same pixels.")
@click.option(
    "--max-side",
    type=click.IntRange(32, 4096),
    default=_SAMPLE.max_side,
    show_default=True,
    help="Longest image side in pixels (MURA's is at most 512).",
)
@click.option("--workers", type=click.IntRange(0), default=0, help="Processes drawing images; 0 = every core.")
@click.option("--force", is_flag=True, help=f"Replace an existing {DATASET_DIR}/ under --out.")
def sample(out: Path, studies_per_part: int, seed: int, max_side: int, workers: int, force: bool) -> None:
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
    config = SampleConfig(studies_per_part=studies_per_part, seed=seed, max_side=max_side)
    dataset_dir = write_sample(out, config, workers=workers)
    click.echo(f"Wrote a synthetic MURA to {dataset_dir}. Next: mura audit {out}")


def _quiet_tensorflow(verbose: bool) -> None:
    """TFX, Beam and TensorFlow log at INFO by default, which drowns the command's own report."""
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="tensorflow_model_analysis")  # 0/0 slices
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger().setLevel(logging.CRITICAL)  # failures reach the user as the error below
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.FATAL)


@main.command()
@click.argument("data_root")
@click.option(
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Pipeline root for the run's artifacts and its ML Metadata (metadata.sqlite).",
)
@_data_options
@click.option("--drift-is-fatal", is_flag=True, help="Fail when train/test drift exceeds the schema's thresholds.")
@click.option(
    "--beam-arg",
    "beam_args",
    multiple=True,
    help="A Beam pipeline argument, repeatable (default: --direct_num_workers=1).",
)
@click.option("--verbose", is_flag=True, help="Show TFX, Beam and TensorFlow logs.")
def ingest(
    data_root: str,
    output: Path,
    max_rejected_fraction: float,
    eval_fraction: float,
    drift_is_fatal: bool,
    beam_args: tuple[str, ...],
    verbose: bool,
) -> None:
    """Ingest and validate a MURA root: ExampleGen, StatisticsGen, schema, ExampleValidator, with Beam.

    DATA_ROOT is the folder that holds MURA-v1.1/ (or MURA-v1.1/ itself): a local path or any URI TensorFlow
    can open (gs://...). Prints examples per split, rejected rows, anomalies and train/test drift; exits non-zero
    when the data is not fit to train on. Re-running on unchanged data reuses the earlier results (TFX cache).
    """
    _quiet_tensorflow(verbose)
    from pipeline.ingest import run_ingestion  # TFX loads in seconds: only for the commands that run it

    data = DataConfig(
        eval_fraction=eval_fraction, max_rejected_fraction=max_rejected_fraction, drift_is_fatal=drift_is_fatal
    )
    run = RunConfig(data_root=str(data_root), pipeline_root=str(output.absolute()))
    if beam_args:
        run = dataclasses.replace(run, beam_pipeline_args=beam_args)
    click.echo(f"Ingesting {data_root}: MuraExampleGen -> StatisticsGen -> ExampleValidator -> gate (Beam)")
    try:
        summary = run_ingestion(run, data)
    except (DataQualityError, MuraLayoutError) as error:
        raise click.ClickException(str(error)) from None
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


@main.group()
def pipeline() -> None:
    """Run the whole TFX pipeline: ingestion, validation, Transform, Trainer, study evaluation, push."""


@pipeline.command("run")
@click.option("--data-root", required=True, help="The folder that holds MURA-v1.1/ (local path or URI).")
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="demo",
    show_default=True,
    help="Training settings: smoke (minutes, learns nothing), demo (2 CPU cores), full (MURA on GPUs).",
)
@click.option(
    "--pipeline-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/pipeline"),
    show_default=True,
    help="Artifacts and ML Metadata; re-runs reuse unchanged steps (TFX cache).",
)
@click.option("--serving-root", default="", help="Where blessed models go. [default: <pipeline-root>/serving]")
@click.option("--model-name", default=GateConfig().model_name, show_default=True)
@click.option(
    "--kappa-floor",
    type=float,
    default=GateConfig().study_kappa_floor,
    show_default=True,
    help="A model is pushed only when its overall study-level Cohen's kappa on the test split is above this.",
)
@click.option(
    "--auc-floor",
    type=float,
    default=GateConfig().auc_floor,
    show_default=True,
    help="TFMA: the overall image-level ROC AUC on the test split must reach this.",
)
@click.option(
    "--body-part-auc-floor",
    type=float,
    default=None,
    help="TFMA: every body part's image-level ROC AUC must reach this. [default: no per-part floor]",
)
@click.option(
    "--auc-min-change",
    type=float,
    default=GateConfig().auc_min_change,
    show_default=True,
    help="TFMA: the candidate's AUC minus the latest blessed model's must reach this (negative: a tolerated drop).",
)
@click.option("--beam-arg", "beam_args", multiple=True, help="A Beam pipeline argument, repeatable.")
@click.option("--verbose", is_flag=True, help="Show TFX, Beam and TensorFlow logs (training progress among them).")
def pipeline_run(
    data_root: str,
    profile: str,
    pipeline_root: Path,
    serving_root: str,
    model_name: str,
    kappa_floor: float,
    auc_floor: float,
    body_part_auc_floor: float | None,
    auc_min_change: float,
    beam_args: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run ExampleGen -> validation -> Transform -> Trainer -> TFMA and study evaluation -> push, locally with Beam.

    A model is pushed only when TFMA's thresholds (AUC floors, and no worse than the latest blessed model) and
    the study-level kappa floor all pass. Prints TFMA's image-level table, MURA's study-level table (kappa and
    AUROC per body part, with the paper's values beside them), and where the model went, or why it did not.
    """
    _quiet_tensorflow(verbose)
    from pipeline.run import run_pipeline

    run = RunConfig(data_root=data_root, pipeline_root=str(pipeline_root.absolute()), serving_root=serving_root)
    if beam_args:
        run = dataclasses.replace(run, beam_pipeline_args=beam_args)
    gate = GateConfig(
        study_kappa_floor=kappa_floor,
        auc_floor=auc_floor,
        body_part_auc_floor=body_part_auc_floor,
        auc_min_change=auc_min_change,
        model_name=model_name,
    )
    click.echo(f"Running the pipeline on {data_root} with the {profile} profile (Beam, {run.pipeline_root})")
    try:
        summary = run_pipeline(run, DataConfig(), PROFILES[profile], gate)
    except (DataQualityError, MuraLayoutError) as error:
        raise click.ClickException(str(error)) from None
    _print_results(summary)


def _table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> str:
    return tabulate(
        [[row[key] for _, key in columns] for row in rows],
        headers=[title for title, _ in columns],
        floatfmt=".3f",
        missingval="-",
    )


def _print_results(summary: PipelineSummary) -> None:
    from mura.study_metrics import STUDY_COLUMNS
    from pipeline.tfma_results import IMAGE_COLUMNS

    click.echo("\nImage-level results on the test split (TFMA):\n")
    click.echo(_table(summary.image_table, IMAGE_COLUMNS))
    click.echo("\nStudy-level results on the test split (kappa: Cohen's, at the model's threshold):\n")
    click.echo(_table(summary.table, STUDY_COLUMNS))
    click.echo(f"\nOfficial-format predictions: {summary.official_predictions}")
    click.echo(f"TFMA evaluation (for notebooks): {summary.evaluation_dir}")
    overall = summary.table[-1]["kappa"]
    if summary.pushed_to:
        click.echo(
            f"Pushed to {summary.pushed_to} (TFMA blessed it; overall study kappa {overall:.3f} > floor "
            f"{summary.kappa_floor})."
        )
        return
    click.echo("Not pushed:")
    for failure in summary.tfma_failures:
        click.echo(f"  TFMA: {failure}")
    if not summary.blessed:
        click.echo(f"  overall study kappa {overall:.3f} is not above the floor {summary.kappa_floor}")


@main.command()
@click.option(
    "--pipeline-root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local run's pipeline root (the folder with metadata.sqlite).",
)
@click.option("--metadata-path", default="", help="The ML Metadata file. [default: <pipeline-root>/metadata.sqlite]")
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
def report(pipeline_root: Path, metadata_path: str, out: Path, cases: int) -> None:
    """Write a static HTML report of the latest run: study-level kappa and AUROC per body part beside the MURA
    paper, ROC curves, reliability diagram and confusion matrices per body part (TFMA), the gate's verdict, and
    the worst false negatives and false positives per body part with Grad-CAM heatmaps from the pushed model.
    """
    _quiet_tensorflow(verbose=False)
    from pipeline.report import write_report
    from pipeline.run_outputs import find_run_outputs

    metadata = metadata_location(str(pipeline_root.absolute()), metadata_path)
    try:
        page = write_report(find_run_outputs(metadata), out, cases)
    except (LookupError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Report written to {page} (open it in a browser; the figures are PNG files beside it).")


@main.command()
@click.option(
    "--model-base-path",
    required=True,
    help="The folder of integer versions the pipeline pushes to: <serving root>/<model name>.",
)
@click.option("--model-name", default=_SERVING.model_name, show_default=True)
@click.option("--port", type=int, default=_SERVING.grpc_port, show_default=True, help="gRPC port.")
@click.option("--rest-api-port", type=int, default=_SERVING.rest_port, show_default=True, help="REST port.")
@click.option(
    "--host", default=_SERVING.host, show_default=True, help="Address to listen on (0.0.0.0: every interface)."
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    default=_SERVING.max_batch_size,
    show_default=True,
    help="Server-side batching of concurrent requests (1: off).",
)
@click.option(
    "--batch-timeout-micros", type=click.IntRange(0), default=_SERVING.batch_timeout_micros, show_default=True
)
@click.option("--poll-seconds", type=float, default=_SERVING.poll_seconds, show_default=True)
@click.option(
    "--max-image-pixels",
    type=click.IntRange(1),
    default=_SERVING.max_image_pixels,
    show_default=True,
    help="Images larger than this are refused with a 400 before decoding (local server).",
)
@click.option("--max-request-bytes", type=click.IntRange(1), default=_SERVING.max_request_bytes, show_default=True)
@click.option(
    "--server",
    type=click.Choice(["auto", "tf-serving", "local"]),
    default="auto",
    show_default=True,
    help="auto: TensorFlow Serving when tensorflow_model_server is on PATH, else the project's server.",
)
@click.option("--verbose", is_flag=True, help="Log every request and TensorFlow's messages.")
def serve(model_base_path: str, server: str, verbose: bool, **settings) -> None:
    """Serve the newest pushed model over TF Serving's gRPC and REST API.

    Production runs TensorFlow Serving itself. Where its binary is missing (no Docker, no APT repository), the
    project's own server implements the same API (PredictionService, ModelService, /v1/models/...) over the same
    folder: it serves the newest version, picks up new pushes without a restart, and batches concurrent requests.
    """
    from serving import tf_serving

    config = ServingConfig(
        model_name=settings["model_name"],
        host=settings["host"],
        grpc_port=settings["port"],
        rest_port=settings["rest_api_port"],
        poll_seconds=settings["poll_seconds"],
        max_batch_size=settings["max_batch_size"],
        batch_timeout_micros=settings["batch_timeout_micros"],
        max_request_bytes=settings["max_request_bytes"],
        max_image_pixels=settings["max_image_pixels"],
    )
    model_base_path = absolute(model_base_path)
    binary = tf_serving.installed()
    if server == "tf-serving" and binary is None:
        raise click.ClickException(f"{tf_serving.BINARY} is not on PATH; use --server local or install TF Serving")
    if server != "local" and binary is not None:
        _exec_tf_serving(binary, model_base_path, config)
    _serve_locally(model_base_path, config, verbose)


def _exec_tf_serving(binary: str, model_base_path: str, config: ServingConfig) -> None:
    import tempfile

    from serving import tf_serving

    folder = tempfile.mkdtemp(prefix="mura-serving-")
    models, batching = os.path.join(folder, "models.config"), os.path.join(folder, "batching.config")
    Path(models).write_text(tf_serving.models_config(config.model_name, model_base_path))
    Path(batching).write_text(tf_serving.batching_config(config))
    command = tf_serving.command(binary, config, models, batching)
    click.echo(f"TensorFlow Serving ({binary}): {' '.join(command[1:])}")
    os.execv(binary, command)


def _serve_locally(model_base_path: str, config: ServingConfig, verbose: bool) -> None:
    import signal
    import threading

    _quiet_tensorflow(verbose)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    from serving.server import start

    click.echo(
        "TensorFlow Serving is not installed here: serving with the project's server, which implements TF "
        "Serving's gRPC and REST API (production uses TensorFlow Serving itself)."
    )
    try:
        running = start(model_base_path, config)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {config.host}: {error}") from None
    served = running.store.current_version()
    state = f"version {served}" if served else "no version yet (waiting for a push)"
    click.echo(f"Model '{config.model_name}' from {model_base_path}: {state}")
    click.echo(f"gRPC  {config.host}:{running.grpc_port}")
    click.echo(f"REST  http://{config.host}:{running.rest_port}/v1/models/{config.model_name}", nl=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    running.stop()


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=f"http://127.0.0.1:{_SERVING.rest_port}", show_default=True, help="REST endpoint.")
@click.option("--grpc", "grpc_target", help="gRPC endpoint host:port; used instead of --url when given.")
@click.option("--model-name", default=_SERVING.model_name, show_default=True)
@click.option("--study", is_flag=True, help="The images are one study: also print its mean and MURA's verdict.")
@click.option("--threshold", type=float, default=TrainConfig().threshold, show_default=True)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per attempt.")
@click.option(
    "--retries", type=click.IntRange(0), default=3, show_default=True, help="While the server is unavailable."
)
def predict(
    images: tuple[Path, ...],
    url: str,
    grpc_target: str | None,
    model_name: str,
    study: bool,
    threshold: float,
    timeout: float,
    retries: int,
) -> None:
    """Ask a running server (TF Serving or `mura serve`) for each image's probability of abnormal."""
    _quiet_tensorflow(verbose=False)
    from mura.study_metrics import study_verdict
    from serving.client import GrpcClient, RestClient, ServingClientError

    payload = [path.read_bytes() for path in images]
    try:
        if grpc_target:
            with GrpcClient(grpc_target, model_name, timeout, retries) as client:
                probabilities = client.predict(payload)
        else:
            probabilities = RestClient(url, model_name, timeout, retries).predict(payload)
    except ServingClientError as error:
        raise click.ClickException(str(error)) from None
    verdict = {0: "normal", 1: "abnormal"}
    rows = [[str(p), q, verdict[int(q > threshold)]] for p, q in zip(images, probabilities, strict=True)]
    click.echo(tabulate(rows, headers=["image", "probability", "verdict"], floatfmt=".3f"))
    if study:
        mean, abnormal = study_verdict(probabilities, threshold)
        click.echo(f"\nStudy of {len(images)} images: mean probability {mean:.3f} -> {verdict[abnormal]}")


@main.group()
def kfp() -> None:
    """Kubeflow Pipelines v2: compile the pipeline (Trainer on GPU nodes) and submit runs.

    Data root, pipeline root and the gate come from the MURA_* environment variables (see the README); use
    object-storage URIs (gs://, s3://) or paths on the PVC named by --pvc.
    """


@kfp.command("compile")
@click.option("--output", type=click.Path(dir_okay=False), default="pipeline.yaml", show_default=True)
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="full", show_default=True)
@click.option("--image", default=KubeflowConfig().image, show_default=True, help="The pipeline image (Dockerfile).")
@click.option(
    "--gpus", type=click.IntRange(0), default=KubeflowConfig().trainer_gpus, show_default=True, help="For the Trainer."
)
@click.option("--pvc", default="", help="A PVC to mount in every step at /mnt/mura (data and pipeline root).")
def kfp_compile(output: str, profile: str, image: str, gpus: int, pvc: str) -> None:
    """Compile to a KFP v2 pipeline.yaml: the Trainer asks for nvidia.com/gpu and lands on GPU nodes."""
    _quiet_tensorflow(verbose=False)
    from pipeline.environment import settings
    from pipeline.kubeflow_runner import compile_pipeline

    chosen = settings({**os.environ, "MURA_PROFILE": profile})
    config = dataclasses.replace(KubeflowConfig(), image=image, trainer_gpus=gpus, pvc_name=pvc)
    click.echo(f"Compiled {compile_pipeline(output, chosen, config)} ({profile} profile, image {image}).")


@kfp.command("submit")
@click.option("--host", required=True, help="The Kubeflow Pipelines API, e.g. http://localhost:8080.")
@click.option("--package", type=click.Path(exists=True, dir_okay=False), default="pipeline.yaml", show_default=True)
@click.option("--experiment", default="mura", show_default=True)
@click.option("--run-name", default=None, help="[default: the pipeline's name and the time]")
def kfp_submit(host: str, package: str, experiment: str, run_name: str | None) -> None:
    """Start a run of a compiled pipeline.yaml on Kubeflow Pipelines."""
    import kfp as kfp_sdk

    try:
        client = kfp_sdk.Client(host=host)
        run = client.create_run_from_pipeline_package(
            package, arguments={}, run_name=run_name, experiment_name=experiment
        )
    except Exception as error:  # kfp raises plain exceptions and urllib3 errors alike
        raise click.ClickException(f"could not submit to {host}: {error}") from None
    click.echo(f"Run {run.run_id} started: {host.rstrip('/')}/#/runs/details/{run.run_id}")
