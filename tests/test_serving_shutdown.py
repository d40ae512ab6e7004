"""Graceful shutdown of `mura serve` (its own process): on SIGTERM it stops accepting, finishes the requests in
flight within the grace period, and exits 0. A request is kept in flight by the batcher, which holds a lone request
for the batch timeout waiting for company."""

import base64
import json
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serve_process import ServeProcess
from tests.small_models import one_version, png

SLOW_SECONDS = 4  # the batch timeout: how long each lone request stays in flight
IMAGE = {"b64": base64.b64encode(png()).decode()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_version(tmp_path_factory.mktemp("shutdown"), marker=0.6)


def slow_server(model_dir: Path, log: Path, grace: float) -> ServeProcess:
    args = ["--model-base-path", str(model_dir), "--batch-timeout-micros", str(SLOW_SECONDS * 1_000_000)]
    return ServeProcess("local", [*args, "--shutdown-grace-seconds", str(grace)], log)


def rest_predict(server: ServeProcess) -> float:
    request = urllib.request.Request(
        server.url + "/v1/models/mura:predict", data=json.dumps({"instances": [IMAGE]}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["predictions"][0]["probability"]


def grpc_predict(target: str) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mura"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png()], dtype=tf.string))
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    return float(tf.make_ndarray(response.outputs["probability"])[0])


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.local_only
def test_sigterm_finishes_the_requests_in_flight_refuses_new_ones_and_exits_0(model_dir: Path, tmp_path) -> None:
    server = slow_server(model_dir, tmp_path / "serve.log", grace=20)
    try:
        with ThreadPoolExecutor(2) as pool:
            rest = pool.submit(rest_predict, server)
            over_grpc = pool.submit(grpc_predict, server.grpc_target)
            time.sleep(1)  # both are in the batcher now, for SLOW_SECONDS
            assert not rest.done() and not over_grpc.done()
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3
            while not refuses_connections(server.rest_port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert refuses_connections(server.rest_port), "still accepting REST connections after SIGTERM"
            assert not rest.done(), "the test must see the new connection refused while a request is in flight"
            assert rest.result(timeout=60) == pytest.approx(0.6)
            assert over_grpc.result(timeout=60) == pytest.approx(0.6)
        assert server.process.wait(timeout=60) == 0, server.log()
        assert time.monotonic() - signalled < SLOW_SECONDS + 10
    finally:
        server.stop()
    log = server.log()
    assert "Stopping: no new requests" in log and "Stopped." in log
    assert "127.0.0.1 POST /v1/models/mura:predict 200" in log


@pytest.mark.local_only
def test_the_grace_period_bounds_the_wait(model_dir: Path, tmp_path) -> None:
    """A request slower than the grace period is cut; the server still exits 0, once the period is over."""
    server = slow_server(model_dir, tmp_path / "serve.log", grace=1)
    outcome: list[object] = []
    try:
        thread = threading.Thread(target=lambda: outcome.append(_attempt(server)))
        thread.start()
        time.sleep(1)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log()
        assert time.monotonic() - signalled < SLOW_SECONDS - 1, "the server waited past its grace period"
        thread.join(timeout=60)
    finally:
        server.stop()
    assert outcome and isinstance(outcome[0], Exception), "the slow request cannot have been answered"
    assert "1 REST requests were cut" in server.log()


def _attempt(server: ServeProcess) -> object:
    try:
        return rest_predict(server)
    except Exception as error:
        return error
