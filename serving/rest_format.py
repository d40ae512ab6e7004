"""TF Serving's REST JSON: the row (`instances`) and columnar (`inputs`) request formats, `{"b64": ...}` for
binary strings, and the matching `predictions` / `outputs` responses."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import tensorflow as tf

from serving.batching import Inputs
from serving.errors import invalid


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
            names = set(rows[0])
            if any(set(r) != names for r in rows):
                raise invalid("every instance must have the same named inputs")
            columns = {name: [r[name] for r in rows] for name in names}
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
    unknown = set(columns) - set(dtypes)
    if unknown:
        raise invalid(f"inputs {sorted(unknown)} are not in the signature, which takes {sorted(dtypes)}")
    return {name: _tensor(value, dtypes[name], name) for name, value in columns.items()}, kind


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
