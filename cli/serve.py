"""Serving commands: serve pushed models over TF Serving's API, and ask a running server about images."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from cli.options import quiet_tensorflow, with_settings
from mura.config import ServingConfig, Settings
from mura.dicom import DicomError, is_dicom, radiograph_png
from mura.filesystem import absolute
from mura.layout import BODY_PARTS, body_part_of_paths

if TYPE_CHECKING:
    from serving.client import GrpcClient, RestClient


@click.command()
@click.option(
    "--model-base-path",
    help="The folder of integer versions the pipeline pushes to. [default: <run.serving_root>/<serving.model_name>]",
)
@click.option(
    "--server",
    type=click.Choice(["auto", "tf-serving", "local"]),
    default="auto",
    show_default=True,
    help="auto: TensorFlow Serving when tensorflow_model_server is on PATH, else the project's server.",
)
@click.option("--verbose", is_flag=True, help="Log at DEBUG, TensorFlow's messages included.")
@click.option("--quiet", is_flag=True, help="Log only warnings and errors: no access log line per request.")
@with_settings(
    ("run.pipeline_root", "--pipeline-root"),
    ("serving.model_name", "--model-name"),
    ("serving.grpc_port", "--port"),
    ("serving.rest_port", "--rest-api-port"),
    ("serving.host", "--host"),
    ("serving.max_batch_size", "--max-batch-size"),
    ("serving.batch_timeout_micros", "--batch-timeout-micros"),
    ("serving.poll_seconds", "--poll-seconds"),
    ("serving.max_image_pixels", "--max-image-pixels"),
    ("serving.max_request_bytes", "--max-request-bytes"),
    ("serving.model_config_file", "--model-config-file"),
    ("serving.model_config_file_poll_wait_seconds", "--model-config-file-poll-wait-seconds"),
    ("serving.version_policy", "--version-policy"),
    ("serving.version_labels", "--version-label"),
    ("serving.allow_version_labels_for_unavailable_models", "--allow-version-labels-for-unavailable-models"),
    ("serving.monitoring_path", "--monitoring-path"),
    ("serving.shutdown_grace_seconds", "--shutdown-grace-seconds"),
    ("serving.rest_backlog", "--rest-backlog"),
    ("serving.max_concurrent_requests", "--max-concurrent-requests"),
    ("serving.max_queued_requests", "--max-queued-requests"),
    ("serving.max_json_depth", "--max-json-depth"),
    ("serving.max_json_values", "--max-json-values"),
    ("serving.grpc_max_workers", "--grpc-max-workers"),
    ("serving.grpc_max_concurrent_rpcs", "--grpc-max-concurrent-rpcs"),
    ("serving.request_log_dir", "--request-log-dir"),
    ("serving.request_log_sampling_rate", "--request-log-sampling-rate"),
    profile=False,
)
def serve(model_base_path: str | None, server: str, verbose: bool, quiet: bool, settings: Settings) -> None:
    """Serve pushed models over TF Serving's gRPC and REST API.

    Production runs TensorFlow Serving itself. Where its binary is missing (no Docker, no APT repository), the
    project's own server implements the same API (PredictionService, ModelService, /v1/models/...) over the same
    folders: it serves the versions its version policy asks for (the newest by default), by number or label,
    picks up new pushes and config changes without a restart, batches concurrent requests, exports Prometheus
    metrics, and on SIGTERM finishes the requests in flight before it exits.
    """
    from serving import tf_serving

    config = settings.serving
    if config.model_config_file:
        if model_base_path:
            raise click.UsageError("--model-base-path and --model-config-file exclude each other: the file names paths")
        config = dataclasses.replace(config, model_config_file=absolute(config.model_config_file))
    else:
        model_base_path = absolute(model_base_path or os.path.join(settings.run.serving, config.model_name))
    binary = tf_serving.installed()
    if server == "tf-serving" and binary is None:
        raise click.ClickException(f"{tf_serving.BINARY} is not on PATH; use --server local or install TF Serving")
    if server == "tf-serving" and config.request_log_dir:
        raise click.UsageError(
            "open-source TensorFlow Serving has no request log collector (a logging_config stops it at startup): "
            "log requests with --server local"
        )
    if server != "local" and binary is not None and not config.request_log_dir:
        _exec_tf_serving(binary, model_base_path, config)
    _serve_locally(model_base_path, config, verbose, quiet)


def _exec_tf_serving(binary: str, model_base_path: str | None, config: ServingConfig) -> None:
    import tempfile

    from serving import tf_serving

    folder = tempfile.mkdtemp(prefix="mura-serving-")
    models = config.model_config_file or os.path.join(folder, "models.config")
    batching, monitoring = os.path.join(folder, "batching.config"), os.path.join(folder, "monitoring.config")
    if not config.model_config_file:
        policy, labels = config.version_policy, config.version_labels
        Path(models).write_text(tf_serving.models_config(config.model_name, model_base_path, policy, labels))
    Path(batching).write_text(tf_serving.batching_config(config))
    if config.monitoring_path:
        Path(monitoring).write_text(tf_serving.monitoring_config(config.monitoring_path))
    command = tf_serving.command(binary, config, models, batching, monitoring if config.monitoring_path else "")
    click.echo(f"TensorFlow Serving ({binary}): {' '.join(command[1:])}")
    os.execv(binary, command)


def _serve_locally(model_base_path: str | None, config: ServingConfig, verbose: bool, quiet: bool) -> None:
    import signal
    import threading

    quiet_tensorflow(verbose)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("serving").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    from serving.errors import ServingError
    from serving.server import start

    click.echo(
        "TensorFlow Serving is not installed here: serving with the project's server, which implements TF "
        "Serving's gRPC and REST API (production uses TensorFlow Serving itself)."
    )
    try:
        running = start(model_base_path, config)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {config.host}: {error}") from None
    except ServingError as error:
        raise click.ClickException(f"the model config was refused: {error}") from None
    for name in running.store.model_names():
        served = running.store.current_version(name)
        state = f"version {served}" if served else "no version yet (waiting for a push)"
        source = config.model_config_file or model_base_path
        click.echo(f"Model '{name}' from {source}: {state}")
    names = running.store.model_names() or [config.model_name]
    click.echo(f"gRPC  {config.host}:{running.grpc_port}")
    click.echo(f"REST  http://{config.host}:{running.rest_port}/v1/models/{names[0]}")
    if config.monitoring_path:
        click.echo(f"Metrics http://{config.host}:{running.rest_port}{config.monitoring_path}", nl=True)
    if config.request_log_dir:
        rate = config.request_log_sampling_rate
        click.echo(f"Request log {config.request_log_dir}: {rate:.0%} of requests (mura drift reads it)")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.2):  # a signal may land on any thread; waking up often lets the main thread see it
        pass
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal does not wait for the grace period
        signal.signal(signum, lambda *_: os._exit(1))
    click.echo(f"Stopping: no new requests; those in flight have {config.shutdown_grace_seconds:g} s to finish.")
    cut = running.stop(config.shutdown_grace_seconds)
    click.echo(f"Stopped; {cut} REST requests were cut at the end of the grace period." if cut else "Stopped.")
    if running.predictor.request_log:
        logger = running.predictor.request_log
        click.echo(f"{logger.logged} images logged to {logger.directory}; {logger.failed} could not be written.")
    # Exit now: the interpreter's teardown of TensorFlow and gRPC took 1.5 to 3 s more (measured), which would
    # count against Kubernetes' grace period; everything the server had to finish is finished.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help="REST endpoint. [default: http://<serving.host>:<serving.rest_port>]")
@click.option("--grpc", "grpc_target", help="gRPC endpoint host:port; used instead of --url when given.")
@click.option(
    "--study",
    is_flag=True,
    help="The images are one study: the model's study signature gives its probability (the mean of its images') "
    "and MURA's verdict at its body part's threshold.",
)
@click.option(
    "--body-part",
    type=click.Choice(BODY_PARTS),
    help="With --study, the study's body part, whose threshold the model applies. [default: the XR_* folder in the "
    "images' paths, as MURA lays them out; else none: the model's global threshold]",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per attempt.")
@click.option(
    "--retries", type=click.IntRange(0), default=3, show_default=True, help="While the server is unavailable."
)
@with_settings(("serving.model_name", "--model-name"), profile=False)
def predict(
    images: tuple[Path, ...],
    url: str | None,
    grpc_target: str | None,
    study: bool,
    body_part: str | None,
    timeout: float,
    retries: int,
    settings: Settings,
) -> None:
    """Ask a running server (TF Serving or `mura serve`) for each image's probability of abnormal, and the
    model's verdict at the threshold it was exported with; with --study, for the study's.

    IMAGES are PNG, JPEG or DICOM files; a DICOM radiograph is converted here to the 8-bit PNG the pipeline trains
    on (rescale, window, MONOCHROME1 inverted, longest side at most dicom.max_side) and sent as such."""
    if body_part and not study:
        raise click.UsageError("--body-part goes with --study: it names the study's body part")
    if study and body_part is None:
        body_part = _body_part_from_paths(images)
    quiet_tensorflow(verbose=False)
    from serving.client import GrpcClient, RestClient, ServingClientError

    config = settings.serving
    payload = [image_bytes(path, settings.dicom.max_side) for path in images]
    try:
        if grpc_target:
            with GrpcClient(grpc_target, config.model_name, timeout, retries) as client:
                _answer(client, images, payload, study, body_part)
        else:
            url = url or f"http://{config.host}:{config.rest_port}"
            _answer(RestClient(url, config.model_name, timeout, retries), images, payload, study, body_part)
    except ServingClientError as error:
        raise click.ClickException(str(error)) from None


VERDICT = {0: "normal", 1: "abnormal"}


def _body_part_from_paths(images: tuple[Path, ...]) -> str:
    """The XR_* folder the images lie in, by MURA's layout; "" (the model's global threshold) when none."""
    try:
        return body_part_of_paths([str(path.absolute()) for path in images]) or ""
    except ValueError as error:
        raise click.UsageError(f"{error}: one study is of one body part; give --body-part") from None


def _answer(
    client: RestClient | GrpcClient,
    images: tuple[Path, ...],
    payload: list[bytes],
    study: bool,
    body_part: str | None,
) -> None:
    """Asks `client` and prints each image's probability, then the study's when `study`."""
    from serving.client import ask_about_study

    if not study:
        answers = client.predict(payload)
        rows = [[str(p), a.probability, VERDICT[a.abnormal]] for p, a in zip(images, answers, strict=True)]
        click.echo(tabulate(rows, headers=["image", "probability", "verdict"], floatfmt=".3f"))
        return
    answer, note, per_part = ask_about_study(client, payload, body_part)
    if note:
        click.echo(note)
    rows = [[str(p), probability] for p, probability in zip(images, answer.image_probabilities, strict=True)]
    click.echo(tabulate(rows, headers=["image", "probability"], floatfmt=".3f"))
    part = f" ({body_part})" if body_part else ""
    threshold = f"{body_part}'s threshold" if body_part and per_part else "the model's threshold"
    click.echo(
        f"\nStudy of {len(images)} images{part}: mean probability {answer.probability:.3f} -> "
        f"{VERDICT[answer.abnormal]} ({threshold}: {answer.threshold:g})"
    )


def image_bytes(path: Path, max_side: int) -> bytes:
    """What the server gets for one file: PNG and JPEG bytes as they are, a DICOM file (the `DICM` marker at byte
    128, whatever its name) as the PNG the import would have written."""
    data = path.read_bytes()
    if not is_dicom(data):
        return data
    try:
        return radiograph_png(data, max_side)
    except DicomError as error:
        raise click.ClickException(f"{path}: {error.reason}: {error.detail}") from None
