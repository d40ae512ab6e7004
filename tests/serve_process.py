"""`mura serve` as its own process, for tests that drive it only over HTTP and gRPC and read its log."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import tf_serving

MURA = str(Path(sys.executable).parent / "mura")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tf_serving_missing(kind: str) -> bool:
    return kind == "tf-serving" and tf_serving.installed() is None


class ServeProcess:
    """A running `mura serve`; its output goes to a file the test can read at any time."""

    def __init__(self, kind: str, args: list[str], log_path: Path, ready_path: str = "/v1/models/mura") -> None:
        self.kind, self.log_path = kind, log_path
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.grpc_target, self.url = f"127.0.0.1:{self.grpc_port}", f"http://127.0.0.1:{self.rest_port}"
        command = [MURA, "serve", "--server", kind, "--port", str(self.grpc_port)]
        command += ["--rest-api-port", str(self.rest_port), *args]
        self._log = log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, text=True)
        self._channel: grpc.Channel | None = None
        if ready_path:
            self.wait_until(lambda: self.http("GET", ready_path)[0] == 200, 180, "did not start")

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_until(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mura serve exited ({self.process.returncode}): {self.log()}")
            try:
                if condition():
                    return
            except (urllib.error.URLError, ConnectionError, grpc.RpcError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"mura serve {what} within {seconds} s: {self.log()[-3000:]}")

    def http(self, method: str, path: str, body: object = None, timeout: float = 60) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def text(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of a GET that is not JSON."""
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_target)
        return self._channel

    def prediction(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def models(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)

    def stop(self, timeout: float = 60) -> int:
        if self._channel is not None:
            self._channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)
        finally:
            self._log.close()
