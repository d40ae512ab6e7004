"""Clients of TF Serving's API (the real server or the project's): images in, probabilities of abnormal out.

Both transports retry with exponential backoff while the server is unavailable (starting, loading a model, or
at its limit of requests: a REST 503 waits the `Retry-After` the server asks for) and turn failures into one clear
sentence.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from mura.config import ServingConfig
from mura.signatures import (
    ABNORMAL,
    BODY_PART_INPUT,
    BODY_PARTS_INPUT,
    IMAGE_PROBABILITIES,
    IMAGES_INPUT,
    PROBABILITY,
    SERVING_BODY_PART,
    SERVING_DEFAULT,
    SERVING_STUDY,
    THRESHOLD,
)
from mura.study_metrics import study_verdict

T = TypeVar("T")


class ServingClientError(Exception):
    """The server could not be reached, or refused the request; the message says which and why."""


MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is waited this long


class _Unavailable(Exception):
    """Worth retrying: the server is not (yet) answering, or asks to be asked again after `retry_after` seconds."""

    def __init__(self, message: object, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _with_retries(call: Callable[[], T], retries: int, backoff: float, where: str) -> T:
    for attempt in range(retries + 1):
        try:
            return call()
        except _Unavailable as error:
            if attempt == retries:
                raise ServingClientError(f"no answer from {where} after {retries + 1} attempts: {error}") from None
            wait = backoff * 2**attempt if error.retry_after is None else min(error.retry_after, MAX_RETRY_AFTER)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    """The seconds of a Retry-After header (its HTTP-date form is not used by TF Serving's API, and is ignored)."""
    try:
        return max(0.0, float(error.headers.get("Retry-After", "")))
    except ValueError:
        return None


class Prediction(NamedTuple):
    """The model's answer for one image: its probability of abnormal, and its verdict at the model's threshold."""

    probability: float
    abnormal: int
    threshold: float


@dataclass(frozen=True)
class StudyPrediction:
    """The model's answer for one study: its probability of abnormal (MURA's protocol: the mean of its images'),
    its verdict at the operating point of its body part, and each image's probability."""

    probability: float
    abnormal: int
    threshold: float
    image_probabilities: tuple[float, ...]


def _study_prediction(outputs: Mapping[str, Any]) -> StudyPrediction:
    """From `serving_study`'s outputs, as either transport gives them (JSON values or arrays)."""
    return StudyPrediction(
        float(outputs[PROBABILITY]),
        int(outputs[ABNORMAL]),
        float(outputs[THRESHOLD]),
        tuple(float(p) for p in np.reshape(outputs[IMAGE_PROBABILITIES], -1)),
    )


@dataclass(frozen=True)
class RestClient:
    url: str  # http://host:8501
    model_name: str = ServingConfig().model_name
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}{path}", data=data, headers={"Content-Type": "application/json"}
        )

        def call() -> dict:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                message = _error_message(error)
                if error.code == 503:
                    raise _Unavailable(message, _retry_after(error)) from None
                if error.code == 404:
                    raise ServingClientError(f"model '{self.model_name}' not found at {self.url}: {message}") from None
                raise ServingClientError(f"{self.url} refused the request ({error.code}): {message}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                raise _Unavailable(getattr(error, "reason", error)) from None

        return _with_retries(call, self.retries, self.backoff, self.url)

    def predict(self, images: list[bytes], body_parts: list[str] | None = None) -> list[Prediction]:
        """`serving_default`; with each image's body part, `serving_body_part` (each at its part's threshold)."""
        encoded = [{"b64": base64.b64encode(image).decode()} for image in images]
        body = {"signature_name": SERVING_DEFAULT, "instances": encoded}
        if body_parts is not None:
            rows = [
                {IMAGES_INPUT: image, BODY_PARTS_INPUT: part} for image, part in zip(encoded, body_parts, strict=True)
            ]
            body = {"signature_name": SERVING_BODY_PART, "instances": rows}
        predictions = self._request(f"/v1/models/{self.model_name}:predict", body)["predictions"]
        return [Prediction(float(p[PROBABILITY]), int(p[ABNORMAL]), float(p[THRESHOLD])) for p in predictions]

    def predict_study(self, images: list[bytes], body_part: str) -> StudyPrediction:
        """In the columnar format: the row format cannot carry a scalar body part beside the images."""
        body = {
            "signature_name": SERVING_STUDY,
            "inputs": {
                IMAGES_INPUT: [{"b64": base64.b64encode(image).decode()} for image in images],
                BODY_PART_INPUT: body_part,
            },
        }
        return _study_prediction(self._request(f"/v1/models/{self.model_name}:predict", body)["outputs"])

    def signature_names(self) -> set[str]:
        metadata = self._request(f"/v1/models/{self.model_name}/metadata")["metadata"]
        return set(metadata["signature_def"]["signature_def"])

    def status(self) -> dict:
        return self._request(f"/v1/models/{self.model_name}")


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return json.load(error)["error"]
    except (ValueError, KeyError, TypeError):
        return error.reason


class GrpcClient:
    """Keeps one channel for its life (use it as a context manager, or close it): a channel per request would pay
    a connection handshake each time."""

    def __init__(
        self,
        target: str,  # host:8500
        model_name: str = ServingConfig().model_name,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.target, self.model_name, self.timeout = target, model_name, timeout
        self.retries, self.backoff = retries, backoff
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            # Reconnect as quickly as the retries ask, not after gRPC's own backoff (up to 2 minutes).
            ("grpc.initial_reconnect_backoff_ms", int(backoff * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(backoff * 1000 * 2**retries)),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def predict(self, images: list[bytes], body_parts: list[str] | None = None) -> list[Prediction]:
        """`serving_default`; with each image's body part, `serving_body_part` (each at its part's threshold)."""
        request = self._predict_request(SERVING_DEFAULT if body_parts is None else SERVING_BODY_PART, images)
        if body_parts is not None:
            request.inputs[BODY_PARTS_INPUT].CopyFrom(tf.make_tensor_proto(body_parts, dtype=tf.string))
        response = self._call(self._stub.Predict, request)
        columns = (tf.make_ndarray(response.outputs[name]).reshape(-1) for name in (PROBABILITY, ABNORMAL, THRESHOLD))
        return [Prediction(float(p), int(a), float(t)) for p, a, t in zip(*columns, strict=True)]

    def predict_study(self, images: list[bytes], body_part: str) -> StudyPrediction:
        request = self._predict_request(SERVING_STUDY, images)
        request.inputs[BODY_PART_INPUT].CopyFrom(tf.make_tensor_proto(body_part, dtype=tf.string))
        response = self._call(self._stub.Predict, request)
        return _study_prediction({name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()})

    def signature_names(self) -> set[str]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        signatures = get_model_metadata_pb2.SignatureDefMap()
        self._call(self._stub.GetModelMetadata, request).metadata["signature_def"].Unpack(signatures)
        return set(signatures.signature_def)

    def _predict_request(self, signature_name: str, images: list[bytes]) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
        return request

    def _call(self, method: Callable[..., T], request: object) -> T:
        def call() -> T:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    raise _Unavailable(error.details()) from None
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    raise ServingClientError(
                        f"model '{self.model_name}' not found at {self.target}: {error.details()}"
                    ) from None
                raise ServingClientError(
                    f"{self.target} refused the request ({error.code().name}): {error.details()}"
                ) from None

        return _with_retries(call, self.retries, self.backoff, self.target)


def ask_about_study(
    client: RestClient | GrpcClient, images: list[bytes], body_part: str
) -> tuple[StudyPrediction, str, bool]:
    """(answer, "" when the model gave it or else why the mean was computed here, whether the threshold is the body
    part's). `serving_study` when the served
    model has it and the server runs it; TF Serving with batching on refuses its scalar body part, and an older
    model has no such signature: then MURA's mean of the images' answers, at the body part's threshold when the model
    has `serving_body_part`, else at its one threshold."""
    signatures = client.signature_names()
    note = "The served model has no study signature (an older model)"
    if SERVING_STUDY in signatures:
        try:
            return client.predict_study(images, body_part), "", True
        except ServingClientError as error:
            if SERVING_BODY_PART not in signatures:
                raise
            note = f"The server refused the study signature ({error})"
    per_part = SERVING_BODY_PART in signatures
    if per_part:
        answers = client.predict(images, [body_part] * len(images))
        note += ": the study's mean is computed here, at the threshold the model answers for its body part."
    else:
        answers = client.predict(images)
        note += ": the study's mean is computed here, at the model's one threshold for every body part."
    probability, abnormal = study_verdict([answer.probability for answer in answers], answers[0].threshold)
    answer = StudyPrediction(probability, abnormal, answers[0].threshold, tuple(a.probability for a in answers))
    return answer, note, per_part
