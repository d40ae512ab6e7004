"""The project's own server for machines without TF Serving: the same gRPC and REST API over the same folder.

Production runs TensorFlow Serving itself (kubernetes/); this one exists because TF Serving's binary needs
Docker or its APT repository, which many users and CI machines do not have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mura.config import ServingConfig
from serving.grpc_service import grpc_server
from serving.model_store import ModelStore
from serving.predictor import Predictor
from serving.rest_service import rest_server

log = logging.getLogger(__name__)


@dataclass
class LocalServer:
    store: ModelStore
    grpc_port: int
    rest_port: int
    _grpc: object
    _rest: object

    def stop(self) -> None:
        self.store.stop()
        self._grpc.stop(grace=1.0)
        self._rest.shutdown()
        self._rest.server_close()


def start(model_base_path: str, config: ServingConfig) -> LocalServer:
    """Loads the newest version (waiting for one if the folder is still empty) and starts both transports."""
    store = ModelStore(model_base_path, config.model_name, config.poll_seconds).start()
    predictor = Predictor(store, config)
    grpc, grpc_port = grpc_server(predictor, config.host, config.grpc_port, config.max_request_bytes)
    rest, rest_port = rest_server(predictor, config.host, config.rest_port, config.max_request_bytes)
    log.info("gRPC on %s:%d, REST on %s:%d", config.host, grpc_port, config.host, rest_port)
    return LocalServer(store, grpc_port, rest_port, grpc, rest)
