"""The transport-neutral heart of the server: checks a request against the served model's signature, refuses
unsafe images, and runs it through the batcher. Both gRPC and REST call this."""

from __future__ import annotations

import io

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from mura import features
from mura.config import ServingConfig
from mura.image_header import ImageHeaderError, read_image_header
from mura.signatures import EXAMPLES_INPUT, IMAGES_INPUT, SERVING_DEFAULT
from serving.batching import Batcher, Inputs
from serving.errors import ServingError, invalid
from serving.model_store import LoadedModel, ModelStore


def input_dtypes(signature: meta_graph_pb2.SignatureDef) -> dict[str, tf.DType]:
    return {name: tf.as_dtype(info.dtype) for name, info in signature.inputs.items()}


class Predictor:
    def __init__(self, store: ModelStore, config: ServingConfig) -> None:
        self.store, self.config, self.metrics = store, config, store.metrics
        self.batcher = Batcher(config.max_batch_size, config.batch_timeout_micros / 1e6, on_batch=self.metrics.batch)

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
            outputs = self._predict(model, signature_name, inputs)
        except ServingError as error:
            self.metrics.version_request(model.name, model.version, signature_name, error.code.name)
            raise
        self.metrics.version_request(model.name, model.version, signature_name, "OK")
        return outputs

    def _predict(self, model: LoadedModel, signature_name: str, inputs: Inputs) -> Inputs:
        expected = input_dtypes(self.signature(model, signature_name))
        if set(inputs) != set(expected):
            raise invalid(
                f"input size does not match signature: {len(inputs)}!={len(expected)} len({{{', '.join(inputs)}}}) "
                f"!= len({{{', '.join(expected)}}}). Sent extra: {sorted(set(inputs) - set(expected))}. "
                f"Missing but required: {sorted(set(expected) - set(inputs))}."
            )
        for key, value in inputs.items():
            if value.ndim == 0 or len(value) == 0:
                raise invalid(f"input '{key}' must be a non-empty batch, got shape {list(value.shape)}")
            if (value.dtype == object) != (expected[key] == tf.string):
                raise invalid(f"input '{key}' must be {expected[key].name}, got {value.dtype}")
        self._check_images(signature_name, inputs)
        try:
            # Queued per signature; the version rides with the request, so no queue or worker keeps a version.
            group = (model.version, id(model))
            outputs = self.batcher.submit((model.name, signature_name), group, _runner(model, signature_name), inputs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise invalid(_first_line(error)) from None
        return outputs

    def _check_images(self, signature_name: str, inputs: Inputs) -> None:
        """Images must be PNG or JPEG and decode to at most `max_image_pixels`: a decompression bomb is refused
        from its header, before any pixel is decoded."""
        if signature_name == SERVING_DEFAULT and IMAGES_INPUT in inputs:
            images = list(inputs[IMAGES_INPUT].reshape(-1))
        elif EXAMPLES_INPUT in inputs:
            images = [_example_image(record) for record in inputs[EXAMPLES_INPUT].reshape(-1)]
        else:
            return
        for index, data in enumerate(images):
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


def _example_image(record: bytes) -> bytes:
    try:
        example = tf.train.Example.FromString(record)
    except Exception:
        raise invalid("examples must be serialized tf.Example protos") from None
    values = example.features.feature[features.IMAGE].bytes_list.value
    if len(values) != 1:
        raise invalid(f"each example needs exactly one '{features.IMAGE}' bytes value, got {len(values)}")
    return values[0]


def _runner(model: LoadedModel, signature_name: str):
    return lambda inputs: model.run(signature_name, inputs)


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__
