"""The transport-neutral heart of the server: checks a request against the served model's signature, refuses
unsafe images, and runs it through the batcher. Both gRPC and REST call this."""

from __future__ import annotations

import io
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from mura.config import ServingConfig
from mura.image_header import ImageHeaderError, read_image_header
from mura.request_log import LoggedImage
from mura.signatures import SERVING_DEFAULT
from serving.batching import Batcher, Inputs
from serving.errors import ServingError, invalid
from serving.model_store import LoadedModel, ModelStore
from serving.request_log import RequestImage, RequestLogger, image_probabilities, request_images


def input_dtypes(signature: meta_graph_pb2.SignatureDef) -> dict[str, tf.DType]:
    return {name: tf.as_dtype(info.dtype) for name, info in signature.inputs.items()}


def declared_shape(info: meta_graph_pb2.TensorInfo) -> list[int] | None:
    """A tensor's dimensions as its signature declares them (-1: any size); None when even its rank is unknown."""
    return None if info.tensor_shape.unknown_rank else [dim.size for dim in info.tensor_shape.dim]


def has_batch_dimension(info: meta_graph_pb2.TensorInfo) -> bool:
    dims = declared_shape(info)
    return bool(dims) and dims[0] == -1


def batchable(signature: meta_graph_pb2.SignatureDef) -> bool:
    """Requests may share a batch only when every input and output is [None, ...]: a signature that answers one
    value for all its rows (a study's mean) would answer one mean for all the studies of a batch."""
    return all(map(has_batch_dimension, [*signature.inputs.values(), *signature.outputs.values()]))


def shape_text(dims: list[int] | None) -> str:
    """[None, 3] for a declared shape, [?] when its rank is unknown (as TF Serving prints one)."""
    return "[?]" if dims is None else "[" + ", ".join("None" if size < 0 else str(size) for size in dims) + "]"


class Predictor:
    def __init__(self, store: ModelStore, config: ServingConfig) -> None:
        self.store, self.config, self.metrics = store, config, store.metrics
        self.batcher = Batcher(config.max_batch_size, config.batch_timeout_micros / 1e6, on_batch=self.metrics.batch)
        self.request_log = RequestLogger.from_config(config)

    def signature(self, model: LoadedModel, signature_name: str) -> meta_graph_pb2.SignatureDef:
        name = signature_name or SERVING_DEFAULT
        if name not in model.signature_defs:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature name: "{name}" not found in signature def',
            )
        return model.signature_defs[name]

    def predict(self, model: LoadedModel, signature_name: str, inputs: Inputs) -> Inputs:
        """`model` as the transport looked it up once, so a version swap mid-request cannot split it."""
        signature_name = signature_name or SERVING_DEFAULT
        try:
            images, outputs = self._predict(model, signature_name, inputs)
        except ServingError as error:
            self.metrics.version_request(model.name, model.version, signature_name, error.code.name)
            raise
        self.metrics.version_request(model.name, model.version, signature_name, "OK")
        if self.request_log and images and self.request_log.sampled():
            self.request_log.log(logged_images(model, signature_name, images, outputs))
        return outputs

    def _predict(self, model: LoadedModel, signature_name: str, inputs: Inputs) -> tuple[list[RequestImage], Inputs]:
        """The request's images (with the body part it gave for each) and the model's outputs."""
        signature = self.signature(model, signature_name)
        expected = input_dtypes(signature)
        if set(inputs) != set(expected):
            raise invalid(
                f"input size does not match signature: {len(inputs)}!={len(expected)} len({{{', '.join(inputs)}}}) "
                f"!= len({{{', '.join(expected)}}}). Sent extra: {sorted(set(inputs) - set(expected))}. "
                f"Missing but required: {sorted(set(expected) - set(inputs))}."
            )
        for key, value in inputs.items():
            _check_shape(key, value, declared_shape(signature.inputs[key]))
            if (value.dtype == object) != (expected[key] == tf.string):
                raise invalid(f"input '{key}' must be {expected[key].name}, got {value.dtype}")
        try:
            images = request_images(expected, inputs)
        except ValueError as error:
            raise invalid(str(error)) from None
        self._check_images(images)
        try:
            # Queued per signature; the version rides with the request, so no queue or worker keeps a version.
            group, run = (model.version, id(model)), _runner(model, signature_name)
            outputs = self.batcher.submit((model.name, signature_name), group, run, inputs, batchable(signature))
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise invalid(_first_line(error)) from None
        return images, outputs

    def _check_images(self, images: list[RequestImage]) -> None:
        """Images must be PNG or JPEG and decode to at most `max_image_pixels`: a decompression bomb is refused
        from its header, before any pixel is decoded."""
        for index, (data, _) in enumerate(images):
            try:
                header = read_image_header(io.BytesIO(data))
            except ImageHeaderError as error:
                raise invalid(f"image {index}: {error}") from None
            pixels = header.width * header.height
            if pixels > self.config.max_image_pixels:
                raise invalid(
                    f"image {index} is {header.width}x{header.height} = {pixels} pixels, more than the "
                    f"limit of {self.config.max_image_pixels}"
                )


def _check_shape(name: str, value: np.ndarray, dims: list[int] | None) -> None:
    """The shape the signature declares (its function would take any other and answer nonsense), and no empty
    batch: refused here with what was expected."""
    if dims is None:
        return
    if value.ndim != len(dims) or any(size not in (-1, got) for size, got in zip(dims, value.shape, strict=True)):
        raise invalid(f"input '{name}' must have shape {shape_text(dims)}, got {list(value.shape)}")
    if dims and dims[0] == -1 and value.shape[0] == 0:
        raise invalid(f"input '{name}' must be a non-empty batch, got shape {list(value.shape)}")


def logged_images(
    model: LoadedModel, signature_name: str, images: list[RequestImage], outputs: Inputs
) -> list[LoggedImage]:
    now = time.time()
    return [
        LoggedImage(image, part, model.name, model.version, signature_name, now, probability)
        for (image, part), probability in zip(images, image_probabilities(outputs, len(images)), strict=True)
    ]


def _runner(model: LoadedModel, signature_name: str):
    return lambda inputs: model.run(signature_name, inputs)


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__
