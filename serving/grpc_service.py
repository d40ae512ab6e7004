"""TF Serving's gRPC API on the project's server: PredictionService (Predict, GetModelMetadata) and
ModelService (GetModelStatus), through the servicer classes of tensorflow-serving-api."""

from __future__ import annotations

from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from mura.signatures import SERVING_DEFAULT
from serving.errors import ServingError, invalid
from serving.model_store import AVAILABLE, END, LOADING
from serving.predictor import Predictor

_STATE = {
    LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    END: get_model_status_pb2.ModelVersionStatus.END,
}
SIGNATURE_DEF = "signature_def"


def _version(model_spec) -> int | None:
    if model_spec.version_label:
        raise invalid("version labels are not supported by this server; ask for a version number")
    return model_spec.version.value if model_spec.HasField("version") else None


def _abort(context: grpc.ServicerContext, error: ServingError):
    context.abort(error.code, str(error))


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):
        try:
            try:
                inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
            except (TypeError, ValueError) as error:
                raise invalid(f"malformed input tensor: {error}") from None
            spec = request.model_spec
            model = self.predictor.store.get(spec.name, _version(spec))
            outputs = self.predictor.predict(model, spec.signature_name, inputs)
        except ServingError as error:
            return _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = spec.signature_name or SERVING_DEFAULT
        output_filter = set(request.output_filter)
        for name, value in outputs.items():
            if not output_filter or name in output_filter:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        try:
            if list(request.metadata_field) != [SIGNATURE_DEF]:
                raise invalid(f"Metadata field {list(request.metadata_field)} is not supported; use signature_def")
            model = self.predictor.store.get(request.model_spec.name, _version(request.model_spec))
        except ServingError as error:
            return _abort(context, error)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF].Pack(model.signature_def_map())
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        try:
            states = self.predictor.store.states(request.model_spec.name, _version(request.model_spec))
        except ServingError as error:
            return _abort(context, error)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in sorted(states.items()):
            response.model_version_status.add(version=version, state=_STATE[state], status=status_pb2.StatusProto())
        return response


def grpc_server(predictor: Predictor, host: str, port: int, max_message_bytes: int) -> tuple[grpc.Server, int]:
    """Started server and the port it bound (port 0 picks a free one)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
