"""TF Serving's REST JSON: the row (`instances`) and columnar (`inputs`) request formats, `{"b64": ...}` for
binary strings, and the matching `predictions` / `outputs` responses."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving.batching import Inputs
from serving.errors import invalid
from serving.predictor import declared_shape, has_batch_dimension, shape_text


def _decode(value: Any, dtype: tf.DType) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid(f'a JSON object in a tensor must be {{"b64": "..."}}, got keys {sorted(value)}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as error:
            raise invalid(f"Unable to base64 decode: {error}") from None
    if isinstance(value, list):
        return [_decode(v, dtype) for v in value]
    if dtype == tf.string:
        if not isinstance(value, str):
            raise invalid(f"expected a string or a b64 object for a string tensor, got {value!r}")
        return value.encode()
    return value


def _tensor(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    decoded = _decode(value, dtype)
    if dtype == tf.string:
        array = np.array(decoded, dtype=object)
    else:
        try:
            array = np.array(decoded, dtype=dtype.as_numpy_dtype)
        except (TypeError, ValueError) as error:
            raise invalid(f"input '{name}' is not a tensor of {dtype.name}: {error}") from None
    if array.dtype == object and dtype == tf.string and any(not isinstance(v, bytes) for v in array.reshape(-1)):
        raise invalid(f"input '{name}' must be a rectangular list of strings")
    return array


def _refuse_unknown(names: set[str], dtypes: dict[str, tf.DType]) -> None:
    unknown = names - set(dtypes)
    if unknown:
        raise invalid(f"inputs {sorted(unknown)} are not in the signature, which takes {sorted(dtypes)}")


def parse_request(body: Any, dtypes: dict[str, tf.DType]) -> tuple[Inputs, str]:
    """(inputs, 'row' or 'columnar') from a predict request body, typed by the signature's inputs."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    if ("instances" in body) == ("inputs" in body):
        raise invalid("Missing 'inputs' or 'instances' key: exactly one of them is required")
    single = next(iter(dtypes)) if len(dtypes) == 1 else None
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise invalid("'instances' must be a non-empty list")
        if all(isinstance(r, dict) and "b64" not in r for r in rows):
            _refuse_unknown(set().union(*rows), dtypes)
            for index, row in enumerate(rows):  # TF Serving's words: every instance names every input
                if set(row) != set(dtypes):
                    raise invalid(
                        f"Failed to process element: {index} of 'instances' list. JSON object with keys "
                        f"{','.join(sorted(row))} keys must be equal to: {','.join(sorted(dtypes))}"
                    )
            columns = {name: [r[name] for r in rows] for name in dtypes}
        elif single is not None:
            columns = {single: rows}
        else:
            raise invalid(f"the signature has inputs {sorted(dtypes)}: instances must be objects naming them")
        kind = "row"
    else:
        given = body["inputs"]
        if isinstance(given, dict) and "b64" not in given:
            columns = given
        elif single is not None:
            columns = {single: given}
        else:
            raise invalid(f"the signature has inputs {sorted(dtypes)}: 'inputs' must be an object naming them")
        kind = "columnar"
    _refuse_unknown(set(columns), dtypes)
    return {name: _tensor(value, dtypes[name], name) for name, value in columns.items()}, kind


def check_row_format(signature_name: str, signature: meta_graph_pb2.SignatureDef) -> None:
    """The row format stacks the instances, so every input it makes has their number as its 0-th dimension; an
    input declared without that dimension (a study's scalar body part) needs the columnar format."""
    for name, info in sorted(signature.inputs.items()):
        if not has_batch_dimension(info):
            raise invalid(
                f"the row format ('instances') gives every named input the same 0-th dimension, one row per "
                f"instance, but input '{name}' of signature \"{signature_name}\" has shape "
                f"{shape_text(declared_shape(info))}: send this request in the columnar format ('inputs'), "
                "whose named inputs need not share the 0-th dimension"
            )


def _json_value(array: np.ndarray, name: str) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        encode = (
            (lambda b: {"b64": base64.b64encode(b).decode()}) if name.endswith("_bytes") else (lambda b: b.decode())
        )
        return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def format_response(outputs: Inputs, kind: str) -> dict[str, Any]:
    values = {name: _json_value(value, name) for name, value in sorted(outputs.items())}
    if kind == "columnar":
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    size = len(next(iter(values.values())))
    return {"predictions": [{name: column[i] for name, column in values.items()} for i in range(size)]}
