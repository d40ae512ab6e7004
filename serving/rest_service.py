"""TF Serving's REST API on the project's server: model status, metadata, and predict, by version number or version
label, with TF Serving's error body (`{"error": ...}`) and status codes; its Prometheus page; one access log line
per request. Every failure is answered; the server keeps serving.

The server counts the connections it is handling (each carries one request: HTTP/1.0), so that a shutdown stops
accepting and then waits for them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import grpc
from google.protobuf import json_format

from serving.errors import ServingError, invalid, not_found
from serving.metrics import CONTENT_TYPE, log_access
from serving.model_store import LoadedModel
from serving.predictor import Predictor, input_dtypes
from serving.rest_format import format_response, parse_request

log = logging.getLogger(__name__)

# TF Serving's own patterns (http_rest_api_util.cc): a version number or a version label, case-insensitive.
_CHOICE = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
PREDICT = re.compile(r"/v1/models/(?P<name>[^/:]+)" + _CHOICE + r":(?P<method>classify|regress|predict)", re.I)
STATUS = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _CHOICE + r"(?:/(?P<sub>metadata))?", re.I)
MAX_VERSION = 2**63 - 1


def _choice(match: re.Match) -> tuple[str, int | None, str | None]:
    """(model name, version, label) of a matched path, URL-decoded as TF Serving decodes them."""
    version = match["version"]
    if version is not None and int(version) > MAX_VERSION:
        raise invalid(f"Failed to convert version: {version} to numeric.")
    label = unquote(match["label"]) if match["label"] is not None else None
    return unquote(match["name"] or ""), int(version) if version is not None else None, label


class _Handler(BaseHTTPRequestHandler):
    predictor: Predictor
    max_request_bytes: int
    metrics_path: str
    server_version = "mura-serving"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _guarded(self, handle) -> None:
        start = time.perf_counter()
        path = self.path.split("?", 1)[0]
        # TF Serving counts every request of its API (model name "" when the path names none), not other paths.
        self.status, self.api, status_name = 0, "", "OK"
        self.model_name = "" if path.lower().startswith("/v1/") else None
        try:
            if self.command == "GET" and self.metrics_path and path == self.metrics_path:
                self._reply(HTTPStatus.OK, self.predictor.metrics.page(), CONTENT_TYPE)
                return
            self._reply(HTTPStatus.OK, json.dumps(handle(path)).encode())
        except ServingError as error:
            status_name = error.code.name
            self._reply(error.http_status, json.dumps({"error": str(error)}).encode())
        except Exception as error:  # a fault of the server itself, never of the request
            status_name = "INTERNAL"
            log.exception("Internal error on %s", self.path)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": f"internal error: {error}"}).encode())
        finally:
            seconds = time.perf_counter() - start
            if self.model_name is not None:  # an API request (TF Serving counts those, not its metrics page)
                self.predictor.metrics.request(self.model_name, self.api, "REST", status_name, seconds)
            log_access(self.client_address[0], self.command, self.path, int(self.status), seconds)

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _get(self, path: str) -> dict:
        match = STATUS.fullmatch(path)
        if not match:
            raise _malformed("GET", path)
        name, version, label = _choice(match)
        self.model_name = name
        if not name:
            raise invalid("Missing model name in request.")
        if match["sub"]:
            model = self.predictor.store.get(name, version, label)
            signatures = json_format.MessageToDict(model.signature_def_map(), preserving_proto_field_name=True)
            return {
                "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": signatures},
            }
        states = self.predictor.store.states(name, version, label)
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": s.state,
                    "status": {"error_code": s.error_code, "error_message": s.error_message},
                }
                for v, s in sorted(states.items(), reverse=True)
            ]
        }

    def _discard(self, length: int, chunk: int = 1 << 16) -> None:
        remaining = min(length, 16 * self.max_request_bytes)
        while remaining > 0 and (data := self.rfile.read(min(chunk, remaining))):
            remaining -= len(data)

    def _post(self, path: str) -> dict:
        match = PREDICT.fullmatch(path)
        if not match:
            raise _malformed("POST", path)
        name, version, label = _choice(match)
        self.model_name, self.api = name, match["method"].lower()
        if self.api != "predict":
            raise invalid(f"{self.api} is not served by this server, which implements TF Serving's predict API")
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_request_bytes:
            self._discard(length)  # read, not kept: the client then sees the answer instead of a broken pipe
            self.close_connection = True
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request body of {length} bytes is over the limit of {self.max_request_bytes}",
            )
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid(f"JSON Parse error: {error}") from None
        signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
        model: LoadedModel = self.predictor.store.get(name, version, label)
        dtypes = input_dtypes(self.predictor.signature(model, signature_name))
        inputs, kind = parse_request(body, dtypes)
        return format_response(self.predictor.predict(model, signature_name, inputs), kind)


def _malformed(method: str, path: str) -> ServingError:
    """TF Serving answers a path under /v1/ that names no API with 400, and any other path with 404."""
    message = f"Malformed request: {method} {path}"
    return invalid(message) if path.lower().startswith("/v1/") else not_found(message)


class RestServer(ThreadingHTTPServer):
    """A thread per connection, and a count of the connections being handled, for `drain`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._active = 0
        self._changed = threading.Condition()

    def process_request(self, request, client_address) -> None:
        with self._changed:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except Exception:
            self._done()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def drain(self, deadline: float) -> int:
        """Stops accepting (the listening socket is closed), then waits until `deadline` (time.monotonic) for the
        requests in flight; returns how many were still running."""
        self.shutdown()
        self.server_close()
        with self._changed:
            self._changed.wait_for(lambda: self._active == 0, timeout=max(0.0, deadline - time.monotonic()))
            return self._active


def rest_server(
    predictor: Predictor, host: str, port: int, max_request_bytes: int, metrics_path: str = ""
) -> tuple[RestServer, int]:
    """Started server (in a thread) and the port it bound (port 0 picks a free one)."""
    attributes = {"predictor": predictor, "max_request_bytes": max_request_bytes, "metrics_path": metrics_path}
    server = RestServer((host, port), type("Handler", (_Handler,), attributes))
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server, server.server_address[1]
