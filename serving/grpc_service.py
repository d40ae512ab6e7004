"""TF Serving's gRPC API on the project's server: PredictionService (Predict, GetModelMetadata) and
ModelService (GetModelStatus), through the servicer classes of tensorflow-serving-api; a model is asked for by
`model_spec.version` or `model_spec.version_label`. Each call is counted (Predict as TF Serving counts it) and
access-logged."""

from __future__ import annotations

import functools
import logging
import time
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from mura.signatures import SERVING_DEFAULT
from serving.errors import ServingError, invalid
from serving.metrics import log_access
from serving.model_store import AVAILABLE, END, LOADING, UNLOADING, LoadedModel
from serving.predictor import Predictor

log = logging.getLogger(__name__)

_STATE = {
    LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    UNLOADING: get_model_status_pb2.ModelVersionStatus.UNLOADING,
    END: get_model_status_pb2.ModelVersionStatus.END,
}
_ERROR_CODE = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_name
SIGNATURE_DEF = "signature_def"


def _choice(model_spec: model_pb2.ModelSpec) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a ModelSpec, whose version and version_label are a oneof."""
    if not model_spec.name:
        raise invalid("ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    return model_spec.name, version, model_spec.version_label if choice == "version_label" else None


def _observed(service: str, api: str = ""):
    """Turns ServingError into TF Serving's status, any other failure into INTERNAL; counts the call (when `api`
    names it, as TF Serving counts Predict) and writes its access log line."""

    def decorate(method):
        path = f"/tensorflow.serving.{service}/{method.__name__}"

        @functools.wraps(method)
        def wrapper(self, request, context: grpc.ServicerContext):
            start, status = time.perf_counter(), "OK"
            try:
                return method(self, request, context)
            except ServingError as error:
                status = error.code.name
                context.abort(error.code, str(error))
            except Exception as error:
                status = "INTERNAL"
                log.exception("Internal error in %s", path)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error: {error}")
            finally:
                seconds = time.perf_counter() - start
                if api:
                    self.predictor.metrics.request(request.model_spec.name, api, "GRPC", status, seconds)
                log_access(context.peer(), "gRPC", path, status, seconds)

        return wrapper

    return decorate


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @_observed("PredictionService", api="Predict")
    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):
        try:
            inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
        except (TypeError, ValueError) as error:
            raise invalid(f"malformed input tensor: {error}") from None
        spec = request.model_spec
        model: LoadedModel = self.predictor.store.get(*_choice(spec))
        outputs = self.predictor.predict(model, spec.signature_name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = spec.signature_name or SERVING_DEFAULT
        output_filter = set(request.output_filter)
        for name, value in outputs.items():
            if not output_filter or name in output_filter:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    @_observed("PredictionService")
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        if list(request.metadata_field) != [SIGNATURE_DEF]:
            raise invalid(f"Metadata field {list(request.metadata_field)} is not supported; use signature_def")
        model = self.predictor.store.get(*_choice(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF].Pack(model.signature_def_map())
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @_observed("ModelService")
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        states = self.predictor.store.states(*_choice(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in sorted(states.items()):
            status = status_pb2.StatusProto(
                error_code=_ERROR_CODE[state.error_code].number, error_message=state.error_message
            )
            response.model_version_status.add(version=version, state=_STATE[state.state], status=status)
        return response


def grpc_server(
    predictor: Predictor,
    host: str,
    port: int,
    max_message_bytes: int,
    max_workers: int = 16,
    max_concurrent_rpcs: int | None = None,
) -> tuple[grpc.Server, int]:
    """Started server and the port it bound (port 0 picks a free one). `max_workers` calls run at once, the others
    queue; past `max_concurrent_rpcs` in the server, calls get RESOURCE_EXHAUSTED (None: no limit)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
