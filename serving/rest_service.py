"""TF Serving's REST API on the project's server: model status, metadata, and predict, with TF Serving's error
body (`{"error": ...}`) and status codes. Every failure is answered; the server keeps serving."""

from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format

from serving.errors import ServingError, invalid, not_found
from serving.predictor import Predictor, input_dtypes
from serving.rest_format import format_response, parse_request

log = logging.getLogger(__name__)

_MODEL = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
STATUS = re.compile(_MODEL + r"$")
METADATA = re.compile(_MODEL + r"/metadata$")
PREDICT = re.compile(_MODEL + r":predict$")


def _version(match: re.Match) -> int | None:
    return int(match["version"]) if match["version"] else None


class _Handler(BaseHTTPRequestHandler):
    predictor: Predictor
    max_request_bytes: int
    server_version = "mura-serving"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _guarded(self, handle) -> None:
        try:
            self._reply(HTTPStatus.OK, handle())
        except ServingError as error:
            self._reply(error.http_status, {"error": str(error)})
        except Exception as error:  # a fault of the server itself, never of the request
            log.exception("Internal error on %s", self.path)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {error}"})

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _get(self) -> dict:
        if match := METADATA.match(self.path):
            model = self.predictor.store.get(match["name"], _version(match))
            signatures = json_format.MessageToDict(model.signature_def_map(), preserving_proto_field_name=True)
            return {
                "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": signatures},
            }
        if match := STATUS.match(self.path):
            states = self.predictor.store.states(match["name"], _version(match))
            return {
                "model_version_status": [
                    {"version": str(v), "state": s, "status": {"error_code": "OK", "error_message": ""}}
                    for v, s in sorted(states.items(), reverse=True)
                ]
            }
        raise not_found(f"Malformed request: GET {self.path}")

    def _discard(self, length: int, chunk: int = 1 << 16) -> None:
        remaining = min(length, 16 * self.max_request_bytes)
        while remaining > 0 and (data := self.rfile.read(min(chunk, remaining))):
            remaining -= len(data)

    def _post(self) -> dict:
        match = PREDICT.match(self.path)
        if not match:
            raise not_found(f"Malformed request: POST {self.path}")
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
        model = self.predictor.store.get(match["name"], _version(match))
        dtypes = input_dtypes(self.predictor.signature(model, signature_name))
        inputs, kind = parse_request(body, dtypes)
        return format_response(self.predictor.predict(model, signature_name, inputs), kind)


def rest_server(predictor: Predictor, host: str, port: int, max_request_bytes: int) -> tuple[ThreadingHTTPServer, int]:
    """Started server (in a thread) and the port it bound (port 0 picks a free one)."""
    handler = type("Handler", (_Handler,), {"predictor": predictor, "max_request_bytes": max_request_bytes})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server, server.server_address[1]
