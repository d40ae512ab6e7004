"""Serving under bursts, against `mura serve` running as its own process: every connection of a burst answered
(200, or a fast 503 with Retry-After past the documented limit), never reset; hostile JSON refused with a 400;
connections kept alive; the clients waiting the Retry-After a 503 asks for."""

import base64
import http.client
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.serving import burst, grpc_request, rest_request
from serving.client import RestClient
from tests.serve_process import ServeProcess
from tests.small_models import one_version, png

IMAGE = png()
BODY = json.dumps({"instances": [{"b64": base64.b64encode(IMAGE).decode()}]}).encode()
MAX_JSON_VALUES = 1000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return one_version(tmp_path_factory.mktemp("bursts"), marker=0.4)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The default limits, but for the JSON values (a small limit is quicker to exceed)."""
    args = ["--model-base-path", str(model_dir), "--max-json-values", str(MAX_JSON_VALUES), "--quiet"]
    served = ServeProcess("local", args, tmp_path_factory.mktemp("log") / "serve.log")
    yield served
    assert served.stop() == 0, served.log()


def outcomes(results: list[tuple[str, float]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for what, _ in results:
        counts[what] = counts.get(what, 0) + 1
    return counts


@pytest.mark.local_only
def test_256_simultaneous_connections_are_all_answered_over_rest_and_grpc(server) -> None:
    rest, _ = burst(rest_request(server.rest_port, IMAGE), 256)
    assert outcomes(rest) == {"200": 256}, "a connection of the burst was refused, reset or failed"
    over_grpc, _ = burst(grpc_request(server.grpc_port, IMAGE), 256)
    assert outcomes(over_grpc) == {"OK": 256}


@pytest.mark.local_only
def test_past_the_queue_a_burst_gets_fast_503s_with_retry_after_never_a_reset(model_dir: Path, tmp_path) -> None:
    """Two requests run at once (each held 0.5 s by the batcher), four wait: of 64 at once, six are answered and
    the others refused at once with TF Serving's error body and a Retry-After, none reset."""
    args = ["--model-base-path", str(model_dir), "--max-concurrent-requests", "2", "--max-queued-requests", "4"]
    args += ["--batch-timeout-micros", "500000", "--max-batch-size", "2", "--grpc-max-concurrent-rpcs", "6"]
    limited = ServeProcess("local", [*args, "--quiet"], tmp_path / "serve.log")
    answers: list[tuple[int, str | None, dict, float]] = []

    def one() -> None:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", limited.rest_port, timeout=60)
        try:
            connection.request("POST", "/v1/models/mura:predict", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answers.append(
                (response.status, response.getheader("Retry-After"), json.load(response), time.perf_counter() - start)
            )
        finally:
            connection.close()

    try:
        results, _ = burst(lambda: _outcome(one), 64)
        over_grpc, _ = burst(grpc_request(limited.grpc_port, IMAGE), 32)
    finally:
        assert limited.stop() == 0
    assert outcomes(results) == {"answered": 64}, "every connection gets an HTTP answer"
    statuses = sorted(status for status, *_ in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 6
    refused = [answer for answer in answers if answer[0] == 503]
    assert all(retry == "1" and list(body) == ["error"] and "limit" in body["error"] for _, retry, body, _ in refused)
    assert max(seconds for *_, seconds in refused) < 0.5, "a refusal must not wait for the queue"
    assert set(outcomes(over_grpc)) == {"OK", "RESOURCE_EXHAUSTED"}


def _outcome(request) -> tuple[str, float]:
    try:
        request()
        return "answered", 0.0
    except Exception as error:
        return type(error).__name__, 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper than 64 levels"),
        (json.dumps({"instances": [[0] * (MAX_JSON_VALUES + 1)]}).encode(), f"more than {MAX_JSON_VALUES} values"),
        (b'{"instances": [' + b"{" * 50_000, "nests deeper"),
        (b'{"instances": "\\"' + b"[" * 100_000 + b'"}', "'instances' must be a non-empty list"),
    ],
)
def test_hostile_json_is_a_400_with_tf_servings_error_body(server, body: bytes, message: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request("POST", "/v1/models/mura:predict", body)
        response = connection.getresponse()
        answer = json.load(response)
    finally:
        connection.close()
    assert response.status == 400 and list(answer) == ["error"] and message in answer["error"], answer
    assert server.http("POST", "/v1/models/mura:predict", json.loads(BODY))[0] == 200


def test_a_connection_is_kept_alive_across_requests(server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        connection.request("GET", "/v1/models/mura")
        first = connection.getresponse()
        first.read()
        socket_before = connection.sock
        connection.request("POST", "/v1/models/mura:predict", BODY)
        second = connection.getresponse()
        assert (first.status, second.status) == (200, 200)
        assert json.load(second)["predictions"][0]["probability"] == pytest.approx(0.4)
        assert connection.sock is socket_before, "the second request needed a new connection"
    finally:
        connection.close()


def test_the_rest_client_waits_the_retry_after_of_a_503() -> None:
    """A server at its limit twice, then answering: the client waits what Retry-After says, not its own backoff."""
    attempts: list[float] = []

    class AtItsLimit(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            attempts.append(time.monotonic())
            busy = len(attempts) <= 2
            answer = {"predictions": [{"probability": 0.5, "abnormal": 0, "threshold": 0.5}]}
            body = json.dumps({"error": "at its limit"} if busy else answer).encode()
            self.send_response(503 if busy else 200)
            if busy:
                self.send_header("Retry-After", "0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    stub = ThreadingHTTPServer(("127.0.0.1", 0), AtItsLimit)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        answers = RestClient(f"http://127.0.0.1:{stub.server_address[1]}", retries=3, backoff=0.01).predict([IMAGE])
    finally:
        stub.shutdown()
        stub.server_close()
    assert [a.probability for a in answers] == [0.5] and len(attempts) == 3
    assert all(later - earlier >= 0.38 for earlier, later in itertools.pairwise(attempts))
