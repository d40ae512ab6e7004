"""TF Serving's REST API on the project's server: model status, metadata, and predict, by version number or version
label, with TF Serving's error body (`{"error": ...}`) and status codes; its Prometheus page; one access log line
per request. Every failure is answered; the server keeps serving.

Two layers. `RestApi` is the API itself, (method, path, body) in, a `Reply` out, run in a worker thread. The front
end is aiohttp's HTTP server on an event loop of its own: it accepts a burst of connections at once (its listen
backlog is a setting; the standard library's server had 5 and reset the rest), keeps connections alive, runs at
most `max_concurrent_requests` requests at a time, queues up to `max_queued_requests` more, and answers the ones
past the queue at once with 503 and `Retry-After`. A request body is refused before it is parsed when it is too
large, nests too deep or holds too many values, so no input becomes a fault of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

import grpc
import numpy as np
from aiohttp import web
from google.protobuf import json_format

from mura.signatures import SERVING_DEFAULT
from serving.errors import ServingError, invalid, not_found
from serving.metrics import CONTENT_TYPE, log_access
from serving.model_store import LoadedModel
from serving.predictor import Predictor, input_dtypes
from serving.rest_format import check_row_format, format_response, parse_request

log = logging.getLogger(__name__)

# TF Serving's own patterns (http_rest_api_util.cc): a version number or a version label, case-insensitive.
_CHOICE = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
PREDICT = re.compile(r"/v1/models/(?P<name>[^/:]+)" + _CHOICE + r":(?P<method>classify|regress|predict)", re.I)
STATUS = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _CHOICE + r"(?:/(?P<sub>metadata))?", re.I)
MAX_VERSION = 2**63 - 1
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # one string, escapes included
RETRY_AFTER_SECONDS = 1
_NESTING = np.zeros(256, np.int8)  # +1 for each opening bracket, -1 for each closing one
_NESTING[list(b"[{")], _NESTING[list(b"]}")] = 1, -1
_CHUNK = 1 << 20


def _choice(match: re.Match) -> tuple[str, int | None, str | None]:
    """(model name, version, label) of a matched path, URL-decoded as TF Serving decodes them."""
    version = match["version"]
    if version is not None and int(version) > MAX_VERSION:
        raise invalid(f"Failed to convert version: {version} to numeric.")
    label = unquote(match["label"]) if match["label"] is not None else None
    return unquote(match["name"] or ""), int(version) if version is not None else None, label


def _malformed(method: str, path: str) -> ServingError:
    """TF Serving answers a path under /v1/ that names no API with 400, and any other path with 404."""
    message = f"Malformed request: {method} {path}"
    return invalid(message) if path.lower().startswith("/v1/") else not_found(message)


def parse_json(data: bytes, max_depth: int, max_values: int) -> object:
    """The request body as JSON, refused (400) before parsing when it nests deeper than `max_depth` or holds more
    than `max_values` values: counted on the bytes with its strings blanked out, at C speed."""
    if not data.strip():
        return None
    outside_strings = JSON_STRING.sub(b'""', data)
    if outside_strings.count(b",") + 1 > max_values:
        raise invalid(f"JSON Parse error: more than {max_values} values in the request body")
    depth, size = 0, len(outside_strings)
    for start in range(0, size, _CHUNK):  # a running sum of the brackets, a megabyte at a time
        chunk = np.frombuffer(outside_strings, np.uint8, min(_CHUNK, size - start), start)
        steps = np.cumsum(_NESTING[chunk], dtype=np.int64)
        if depth + int(steps.max()) > max_depth:
            raise invalid(f"JSON Parse error: the request body nests deeper than {max_depth} levels")
        depth += int(steps[-1])
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise invalid(f"JSON Parse error: {error}") from None
    except RecursionError:  # not reached within the depth limit; kept so that no body can become a server fault
        raise invalid(f"JSON Parse error: the request body nests deeper than {max_depth} levels") from None


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    model_name: str | None = None  # an API request (TF Serving counts those): the model it named, "" if none
    api: str = ""  # "predict" for predict requests, as TF Serving labels their latency
    status_name: str = "OK"


def _error(error: ServingError) -> Reply:
    return Reply(error.http_status, json.dumps({"error": str(error)}).encode(), status_name=error.code.name)


class RestApi:
    """TF Serving's REST API, without its transport: one request in, its reply out (in a worker thread)."""

    def __init__(
        self, predictor: Predictor, max_request_bytes: int, metrics_path: str, max_json_depth: int, max_json_values: int
    ) -> None:
        self.predictor, self.max_request_bytes, self.metrics_path = predictor, max_request_bytes, metrics_path
        self.max_json_depth, self.max_json_values = max_json_depth, max_json_values

    def handle(self, method: str, path: str, body: bytes | None) -> Reply:
        """`body` None: it was larger than `max_request_bytes` (and was not kept)."""
        path = path.split("?", 1)[0]
        model_name = "" if path.lower().startswith("/v1/") else None
        if method == "GET" and self.metrics_path and path == self.metrics_path:
            return Reply(HTTPStatus.OK, self.predictor.metrics.page(), CONTENT_TYPE)
        reply = Reply(HTTPStatus.OK, b"", model_name=model_name)
        try:
            if method == "GET":
                answer = self._get(path, reply)
            elif method == "POST":
                answer = self._post(path, body, reply)
            else:
                raise _malformed(method, path)
            reply.body = json.dumps(answer).encode()
        except ServingError as error:
            failed = _error(error)
            reply.status, reply.body, reply.status_name = failed.status, failed.body, failed.status_name
        except Exception as error:  # a fault of the server itself, never of the request
            log.exception("Internal error on %s %s", method, path)
            reply.status, reply.status_name = HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL"
            reply.body = json.dumps({"error": f"internal error: {error}"}).encode()
        return reply

    def _get(self, path: str, reply: Reply) -> dict:
        match = STATUS.fullmatch(path)
        if not match:
            raise _malformed("GET", path)
        name, version, label = _choice(match)
        reply.model_name = name
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

    def _post(self, path: str, data: bytes | None, reply: Reply) -> dict:
        match = PREDICT.fullmatch(path)
        if not match:
            raise _malformed("POST", path)
        name, version, label = _choice(match)
        reply.model_name, reply.api = name, match["method"].lower()
        if reply.api != "predict":
            raise invalid(f"{reply.api} is not served by this server, which implements TF Serving's predict API")
        if data is None:
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body is over the limit of {self.max_request_bytes} bytes"
            )
        body = parse_json(data, self.max_json_depth, self.max_json_values)
        signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
        model: LoadedModel = self.predictor.store.get(name, version, label)
        signature = self.predictor.signature(model, signature_name)
        inputs, kind = parse_request(body, input_dtypes(signature))
        if kind == "row":
            check_row_format(signature_name or SERVING_DEFAULT, signature)
        return format_response(self.predictor.predict(model, signature_name, inputs), kind)


class RestServer:
    """aiohttp's server on an event loop in a thread of its own, the requests run by a pool of worker threads."""

    def __init__(self, api: RestApi, host: str, port: int, backlog: int, max_concurrent: int, max_queued: int) -> None:
        self.api, self.max_concurrent, self.max_queued = api, max_concurrent, max_queued
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._running = self._waiting = 0  # touched only on the loop
        self._draining = False
        self._idle: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest", daemon=True)
        self._thread.start()
        self._runner, self._site = self._call(self._start(host, port, backlog))
        self.port = self._site.port

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _start(self, host: str, port: int, backlog: int) -> tuple[web.AppRunner, web.TCPSite]:
        self._idle, self._slots = asyncio.Event(), asyncio.Semaphore(self.max_concurrent)
        self._idle.set()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)  # `drain` has waited already
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=backlog)
        await site.start()
        return runner, site

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is over the limit: then it is read on and dropped (up to 16 times the limit),
        so that the client reads the answer instead of a broken pipe."""
        limit, parts, size = self.api.max_request_bytes, [], 0
        if request.content_length is None or request.content_length <= limit:
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    break
                parts.append(chunk)
            else:
                return b"".join(parts)
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > 16 * limit:
                break
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        self._running += 1
        self._idle.clear()
        try:
            reply = await self._answer(request)
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
        seconds = time.perf_counter() - start
        if reply.model_name is not None:
            self.api.predictor.metrics.request(reply.model_name, reply.api, "REST", reply.status_name, seconds)
        log_access(request.remote or "", request.method, request.raw_path, int(reply.status), seconds)
        headers = {"Content-Type": reply.content_type}
        if reply.status == HTTPStatus.SERVICE_UNAVAILABLE:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if self._draining or reply.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            headers["Connection"] = "close"
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    async def _answer(self, request: web.Request) -> Reply:
        if self._draining:
            return _error(ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down"))
        if self._slots.locked() and self._waiting >= self.max_queued:  # refused before its body is read: fast
            return _error(
                ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the server is at its limit of {self.max_concurrent} requests running and {self.max_queued} "
                    "waiting; retry later",
                )
            )
        body = await self._body(request)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._loop.run_in_executor(self._pool, self.api.handle, request.method, request.raw_path, body)
        finally:
            self._slots.release()

    def drain(self, deadline: float) -> int:
        """Stops accepting (the listening socket is closed), waits until `deadline` (time.monotonic) for the
        requests in flight, then closes every connection and ends the loop; returns how many requests were still
        running."""
        running = self._call(self._drain(deadline))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        return running

    async def _drain(self, deadline: float) -> int:
        self._draining = True
        await self._site.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        running = self._running
        await self._runner.cleanup()
        self._pool.shutdown(wait=False)
        return running


def rest_server(
    predictor: Predictor,
    host: str,
    port: int,
    max_request_bytes: int,
    metrics_path: str = "",
    *,
    backlog: int = 2048,
    max_concurrent: int = 64,
    max_queued: int = 1024,
    max_json_depth: int = 64,
    max_json_values: int = 10_000_000,
) -> tuple[RestServer, int]:
    """Started server (in a thread) and the port it bound (port 0 picks a free one)."""
    api = RestApi(predictor, max_request_bytes, metrics_path, max_json_depth, max_json_values)
    server = RestServer(api, host, port, backlog, max_concurrent, max_queued)
    return server, server.port
