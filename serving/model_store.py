"""The models a server holds: the newest integer version under <base path>, reloaded when a newer one appears.

As TF Serving does, the folder is polled; a new version is loaded (and warmed up) in the background while the
current one keeps answering, then swapped in. A version that fails to load is reported and skipped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from mura.model_versions import versions
from mura.signatures import WARMUP_FILE
from serving.errors import not_found
from serving.warmup import read_warmup_requests

log = logging.getLogger(__name__)

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclass
class LoadedModel:
    name: str
    version: int
    path: str
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    functions: dict[str, Callable] = field(repr=False)
    saved_model: object = field(repr=False)  # owns the variables the functions read

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.functions[signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """The model's metadata as both transports report it."""
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in self.signature_defs.items():
            signatures.signature_def[name].CopyFrom(signature)
        return signatures


def signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs as TF Serving reports them in metadata, read from saved_model.pb."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    return {
        name: signature
        for name, signature in saved_model.meta_graphs[0].signature_def.items()
        if not name.startswith("__")  # TF's internal init op entries
    }


def load(name: str, version: int, path: str) -> LoadedModel:
    loaded = tf.saved_model.load(path)
    defs = signature_defs(path)
    model = LoadedModel(name, version, path, defs, {key: loaded.signatures[key] for key in defs}, loaded)
    for signature_name, inputs in read_warmup_requests(os.path.join(path, WARMUP_FILE)):
        model.run(signature_name, inputs)
    return model


class ModelStore:
    """Thread-safe holder of the served version of one model, kept current by a polling thread."""

    def __init__(self, base_path: str, name: str, poll_seconds: float) -> None:
        self.base_path, self.name, self.poll_seconds = base_path, name, poll_seconds
        self._current: LoadedModel | None = None
        self._states: dict[int, str] = {}
        self._failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"poll-{name}", daemon=True)

    def start(self) -> ModelStore:
        self.refresh()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a bad version must not stop the polling
                log.exception("Polling %s failed", self.base_path)

    def refresh(self) -> None:
        """Loads the newest version if it is newer than the served one; the served one answers meanwhile."""
        available = versions(self.base_path)
        newest = next((v for v in reversed(available) if v not in self._failed), None)
        if newest is None or (self._current is not None and newest <= self._current.version):
            return
        with self._lock:
            self._states[newest] = LOADING
        try:
            model = load(self.name, newest, os.path.join(self.base_path, str(newest)))
        except Exception as error:
            log.error("Version %d of %s failed to load: %s", newest, self.name, error)
            with self._lock:
                self._failed[newest] = str(error)
                self._states.pop(newest, None)
            return
        with self._lock:
            previous, self._current = self._current, model
            self._states[newest] = AVAILABLE
            if previous is not None:
                self._states[previous.version] = END
        log.info("Serving version %d of %s", newest, self.name)

    def current_version(self) -> int | None:
        current = self._current
        return current.version if current else None

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The served model; TF Serving's NOT_FOUND message when the name or version is not being served."""
        current = self._current
        if name != self.name or current is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        if version is not None and version != current.version:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return current

    def states(self, name: str, version: int | None = None) -> dict[int, str]:
        with self._lock:
            states = dict(self._states)
        if name != self.name or not states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: states[version]}
        return states
