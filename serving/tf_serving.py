"""TensorFlow Serving's own configuration for this model, and the command that runs the real server.

`kubernetes/base/models.config` and `batching.config` are what these functions write for the Kubernetes layout
(`/models/mura`, checked by a test); `mura serve` writes its own copies pointing at the local model folder, and
the project's server reads the same models.config (or the user's config file) through `serving.model_config`.
"""

from __future__ import annotations

import shutil

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mura.config import ServingConfig
from serving.model_config import TENSORFLOW, labels_from_setting, policy_from_setting

BINARY = "tensorflow_model_server"
NUM_BATCH_THREADS = 2  # one per core of the machines this runs on


def models_config(
    model_name: str, base_path: str, version_policy: str = "latest:1", version_labels: tuple[str, ...] = ()
) -> str:
    """ModelServerConfig text proto: one TensorFlow model, the versions its policy asks for (the newest by
    default), and its version labels (settings' forms: `latest:2`, `("stable=3", "canary=4")`)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform=TENSORFLOW)
    model.model_version_policy.CopyFrom(policy_from_setting(version_policy))
    for label, version in labels_from_setting(version_labels).items():
        model.version_labels[label] = version
    return text_format.MessageToString(config)


def monitoring_config(path: str) -> str:
    """MonitoringConfig text proto: Prometheus metrics on the REST port at `path` (TF Serving parses the text
    without a schema import here, so it is written by hand, like the batching parameters)."""
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def batching_config(config: ServingConfig) -> str:
    """BatchingParameters text proto (TF Serving parses it without a schema import, so it is written by hand)."""
    return (
        f"max_batch_size {{ value: {config.max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {config.batch_timeout_micros} }}\n"
        f"num_batch_threads {{ value: {NUM_BATCH_THREADS} }}\n"
        "max_enqueued_batches { value: 100 }\n"
    )


def installed() -> str | None:
    return shutil.which(BINARY)


def command(
    binary: str,
    config: ServingConfig,
    models_config_path: str,
    batching_config_path: str,
    monitoring_config_path: str = "",
) -> list[str]:
    """tensorflow_model_server's arguments for these settings (a config file given in the settings is polled)."""
    arguments = [
        binary,
        f"--port={config.grpc_port}",
        f"--rest_api_port={config.rest_port}",
        "--rest_api_timeout_in_ms=30000",
        f"--model_config_file={models_config_path}",
        f"--file_system_poll_wait_seconds={max(1, round(config.poll_seconds))}",
        "--enable_batching=true" if config.max_batch_size > 1 else "--enable_batching=false",
        f"--batching_parameters_file={batching_config_path}",
        "--enable_model_warmup=true",
        f"--rest_api_num_threads={config.max_concurrent_requests}",
        f"--grpc_max_threads={config.grpc_max_workers}",
    ]
    if config.model_config_file and config.model_config_file_poll_wait_seconds > 0:
        poll = max(1, round(config.model_config_file_poll_wait_seconds))
        arguments.append(f"--model_config_file_poll_wait_seconds={poll}")
    if config.allow_version_labels_for_unavailable_models:
        arguments.append("--allow_version_labels_for_unavailable_models=true")
    if monitoring_config_path:
        arguments.append(f"--monitoring_config_file={monitoring_config_path}")
    return arguments
