"""Prometheus metrics on the REST port, named as TF Serving names them, and the access log, against `mura serve`
running as its own process on a small model."""

import base64
import re
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.serve_process import ServeProcess, tf_serving_missing
from tests.small_models import one_version, png

METRICS = "/monitoring/prometheus/metrics"
IMAGE = {"b64": base64.b64encode(png()).decode()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_version(tmp_path_factory.mktemp("metrics"), marker=0.7)


@pytest.fixture(scope="module", params=["local", "tf-serving"])
def server(request, model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    if tf_serving_missing(request.param):
        pytest.skip("tensorflow_model_server is not on PATH: ran against the project's server only")
    log = tmp_path_factory.mktemp("log") / "serve.log"
    served = ServeProcess(request.param, ["--model-base-path", str(model_dir), "--batch-timeout-micros", "20000"], log)
    yield served
    assert served.stop() == 0, served.log()


SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(server: ServeProcess) -> dict[tuple[str, frozenset], float]:
    """Every sample of the metrics page, by (name, labels), read as Prometheus' text format spells it (the names
    exactly as written: prometheus_client's parser would add `_total` to counters)."""
    status, content_type, page = server.text(METRICS)
    assert status == 200 and content_type.startswith("text/plain")
    found = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.fullmatch(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            labels = frozenset(LABEL.findall(match["labels"] or ""))
            found[match["name"], labels] = float(match["value"])
    return found


def grpc_predict(server: ServeProcess, label: str = "") -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mura"
    if label:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png()], dtype=tf.string))
    server.prediction().Predict(request, timeout=60)


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_latency_batches_and_loads_are_counted_under_tf_servings_names(server) -> None:
    before = samples(server)
    for _ in range(3):
        assert server.http("POST", "/v1/models/mura:predict", {"instances": [IMAGE]})[0] == 200
    assert server.http("POST", "/v1/models/mura/versions/9:predict", {"instances": [IMAGE]})[0] == 404
    for _ in range(2):
        grpc_predict(server)
    with pytest.raises(grpc.RpcError):
        grpc_predict(server, label="nope")
    after = samples(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = ":tensorflow:serving:request_count"
    assert delta(count, model_name="mura", status="OK") == 5
    assert delta(count, model_name="mura", status="NOT_FOUND") == 1
    assert delta(count, model_name="mura", status="INVALID_ARGUMENT") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert delta(latency, model_name="mura", API="predict", entrypoint="REST") == 3
    assert delta(latency, model_name="mura", API="Predict", entrypoint="GRPC") == 2
    loads = ":tensorflow:cc:saved_model:load_attempt_count"
    assert any(name == loads and dict(labels).get("status") == "success" for name, labels in after)
    page = server.text(METRICS)[2]
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page


@pytest.mark.local_only
def test_batch_sizes_and_requests_per_version_and_signature(server) -> None:
    if server.kind != "local":
        pytest.skip("the project's own metric, and its batcher's")
    before = samples(server)
    assert server.http("POST", "/v1/models/mura:predict", {"instances": [IMAGE, IMAGE]})[0] == 200
    after = samples(server)
    batch = ":tensorflow:serving:batching_session:input_batch_size"
    assert value(after, batch + "_count") - value(before, batch + "_count") == 1
    assert value(after, batch + "_sum") - value(before, batch + "_sum") == 2
    per_version = ":mura:serving:request_count"
    labels = {"model_name": "mura", "version": "1", "signature_name": "serving_default", "status": "OK"}
    assert value(after, per_version, **labels) - value(before, per_version, **labels) == 1
    assert value(after, ":tensorflow:serving:batching_session:processed_batch_size_count") > 0


@pytest.mark.local_only
def test_each_request_has_an_access_log_line(server) -> None:
    if server.kind != "local":
        pytest.skip("TF Serving has no access log")
    server.http("POST", "/v1/models/mura/versions/9:predict", {"instances": [IMAGE]})
    grpc_predict(server)
    server.wait_until(lambda: "/tensorflow.serving.PredictionService/Predict OK" in server.log(), 10, "logged")
    log = server.log()
    assert re.search(r"127\.0\.0\.1 POST /v1/models/mura/versions/9:predict 404 \d+\.\d ms", log)
    assert re.search(r"ipv4:127\.0\.0\.1:\d+ gRPC /tensorflow\.serving\.PredictionService/Predict OK \d+\.\d ms", log)


@pytest.mark.local_only
def test_quiet_serves_without_an_access_log(model_dir: Path, tmp_path: Path) -> None:
    quiet = ServeProcess("local", ["--model-base-path", str(model_dir), "--quiet"], tmp_path / "serve.log")
    try:
        assert quiet.http("POST", "/v1/models/mura:predict", {"instances": [IMAGE]})[0] == 200
        assert quiet.text(METRICS)[0] == 200
    finally:
        assert quiet.stop() == 0
    assert " POST /v1/models/mura:predict " not in quiet.log() and "Stopped." in quiet.log()
