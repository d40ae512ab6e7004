"""The project's own server for machines without TF Serving: the same gRPC and REST API over the same folders.

Production runs TensorFlow Serving itself (kubernetes/); this one exists because TF Serving's binary needs
Docker or its APT repository, which many users and CI machines do not have. It reads the same ModelServerConfig:
the one `serving.tf_serving.models_config` writes from the settings, or the user's `model_config_file`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from mura.config import ServingConfig
from mura.filesystem import absolute
from serving.grpc_service import grpc_server
from serving.metrics import Metrics
from serving.model_config import parse
from serving.model_store import ModelStore
from serving.predictor import Predictor
from serving.rest_service import RestServer, rest_server
from serving.tf_serving import models_config

log = logging.getLogger(__name__)


@dataclass
class LocalServer:
    store: ModelStore
    predictor: Predictor
    grpc_port: int
    rest_port: int
    _grpc: object
    _rest: RestServer

    def stop(self, grace: float = 1.0) -> int:
        """Stops accepting on both ports at once, lets the requests in flight finish for up to `grace` seconds, and
        returns how many REST requests were cut (gRPC cancels its own late calls)."""
        deadline = time.monotonic() + grace
        self.store.stop()
        grpc_done = self._grpc.stop(grace)  # refuses new calls now; running ones have `grace` seconds
        cut = self._rest.drain(deadline)
        grpc_done.wait(max(0.0, deadline - time.monotonic()))
        if self.predictor.request_log:
            self.predictor.request_log.close()
        return cut


def model_store(model_base_path: str | None, config: ServingConfig, metrics: Metrics | None = None) -> ModelStore:
    """The models to serve: the config file's when the settings name one, else one model from the settings."""
    options = {"allow_labels_for_unavailable": config.allow_version_labels_for_unavailable_models, "metrics": metrics}
    if config.model_config_file:
        poll = config.model_config_file_poll_wait_seconds
        return ModelStore.from_file(config.model_config_file, config.poll_seconds, config_poll_seconds=poll, **options)
    if not model_base_path:
        raise ValueError("a model base path or a model config file is needed")
    base_path = absolute(model_base_path)
    text = models_config(config.model_name, base_path, config.version_policy, config.version_labels)
    return ModelStore(parse(text), config.poll_seconds, **options)


def start(model_base_path: str | None, config: ServingConfig) -> LocalServer:
    """Loads the versions the config asks for (waiting for a push if a folder is still empty) and starts both
    transports; a config TF Serving would refuse raises its ServingError."""
    store = model_store(model_base_path, config).start()
    predictor = Predictor(store, config)
    grpc, grpc_port = grpc_server(
        predictor,
        config.host,
        config.grpc_port,
        config.max_request_bytes,
        max_workers=config.grpc_max_workers,
        max_concurrent_rpcs=config.grpc_max_concurrent_rpcs or None,
    )
    rest, rest_port = rest_server(
        predictor,
        config.host,
        config.rest_port,
        config.max_request_bytes,
        config.monitoring_path,
        backlog=config.rest_backlog,
        max_concurrent=config.max_concurrent_requests,
        max_queued=config.max_queued_requests,
        max_json_depth=config.max_json_depth,
        max_json_values=config.max_json_values,
    )
    log.info("gRPC on %s:%d, REST on %s:%d", config.host, grpc_port, config.host, rest_port)
    return LocalServer(store, predictor, grpc_port, rest_port, grpc, rest)
