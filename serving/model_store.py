"""The models a server holds, as TF Serving's ServerCore holds them: the models of a ModelServerConfig, for each the
versions its `model_version_policy` asks for among the integer folders under its base path, and its
`version_labels`.

As TF Serving does, each base path is polled; a new version is loaded (and warmed up) in the background while the
served ones keep answering, and a version the policy no longer asks for is unloaded once another one is available
(TF Serving's availability-preserving policy). An unloaded version is released: the store drops it, and nothing
else keeps it (the batcher holds a version only while its requests run). A version that fails to load is reported
in the status (END, with its error) and the versions already served stay. The config itself may be re-read from a
file, as `--model_config_file_poll_wait_seconds` makes TF Serving do: a changed file is applied whole, or, when TF
Serving would refuse it, not at all.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, status_pb2

from mura.model_versions import versions
from mura.signatures import WARMUP_FILE
from serving.errors import ServingError, invalid, not_found
from serving.metrics import Metrics
from serving.model_config import ModelEntry, aspired_versions, parse, unavailable_label
from serving.warmup import read_warmup_requests

log = logging.getLogger(__name__)

LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"
_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


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


@dataclass(frozen=True)
class VersionStatus:
    """A version's state, and why it ended when it failed to load (TF Serving's ModelVersionStatus)."""

    state: str
    error_code: str = "OK"
    error_message: str = ""


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


def load(name: str, version: int, path: str, metrics: Metrics | None = None) -> LoadedModel:
    """The SavedModel at `path`, loaded and warmed up with its warm-up requests (timed into `metrics`)."""
    start = time.perf_counter()
    try:
        loaded = tf.saved_model.load(path)
        defs = signature_defs(path)
    except Exception:
        if metrics:
            metrics.model_loaded(path, ok=False, seconds=time.perf_counter() - start)
        raise
    if metrics:
        metrics.model_loaded(path, ok=True, seconds=time.perf_counter() - start)
    model = LoadedModel(name, version, path, defs, {key: loaded.signatures[key] for key in defs}, loaded)
    start = time.perf_counter()
    for signature_name, inputs in read_warmup_requests(os.path.join(path, WARMUP_FILE)):
        model.run(signature_name, inputs)
    if metrics:
        metrics.model_warmed_up(path, seconds=time.perf_counter() - start)
    return model


def _error_code(error: Exception) -> str:
    """TF Serving's error_code of a failed load: TensorFlow's own code, else UNKNOWN."""
    if isinstance(error, tf.errors.OpError):
        return _CODES.values_by_number[error.error_code].name
    return "UNKNOWN"


@dataclass
class _Served:
    """One model: its config entry (None once the config dropped it), its loaded versions, states and labels."""

    entry: ModelEntry | None
    loaded: dict[int, LoadedModel] = field(default_factory=dict)
    status: dict[int, VersionStatus] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)


class ModelStore:
    """Thread-safe holder of the served versions of every configured model, kept current by polling threads."""

    def __init__(
        self,
        entries: list[ModelEntry],
        poll_seconds: float,
        *,
        config_file: str = "",
        config_poll_seconds: float = 0.0,
        allow_labels_for_unavailable: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.poll_seconds, self.config_file, self.config_poll_seconds = poll_seconds, config_file, config_poll_seconds
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.metrics = metrics or Metrics()
        self._entries = entries
        self._config_text = _read(config_file) if config_file else ""
        self._refused = ""  # the last refused content (or read error), logged once
        self._models: dict[str, _Served] = {}
        self._lock = threading.Lock()  # the maps above
        self._reload = threading.Lock()  # one config change or folder poll at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_file(cls, path: str, poll_seconds: float, **options: object) -> ModelStore:
        return cls(parse(_read(path)), poll_seconds, config_file=path, **options)

    def start(self) -> ModelStore:
        """Applies the config (loading every version it asks for), then polls; a config TF Serving would refuse
        raises its error here."""
        self.apply(self._entries)
        self._threads = [threading.Thread(target=self._poll_folders, name="poll-models", daemon=True)]
        if self.config_file and self.config_poll_seconds > 0:
            self._threads.append(threading.Thread(target=self._poll_config, name="poll-config", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    # Configuration.

    def apply(self, entries: list[ModelEntry]) -> None:
        """Serves exactly these models from now on, as TF Serving's ReloadConfig: labels are checked first against
        the versions available now, then models are added, changed and removed, and their versions loaded."""
        with self._reload:
            labels = self._checked_labels(entries)
            names = {entry.name for entry in entries}
            with self._lock:
                for name, served in self._models.items():
                    if name not in names:
                        served.entry, served.labels = None, {}
                for entry in entries:
                    served = self._models.setdefault(entry.name, _Served(entry))
                    served.entry, served.labels = entry, labels[entry.name]
            self._entries = entries
            self._refresh_all()

    def _checked_labels(self, entries: list[ModelEntry]) -> dict[str, dict[str, int]]:
        """TF Serving's UpdateModelVersionLabelMap: a label may name only an available version, unless
        `allow_labels_for_unavailable` and the label is new or keeps its version."""
        with self._lock:
            current = {name: (dict(s.labels), dict(s.status)) for name, s in self._models.items()}
        checked = {}
        for entry in entries:
            labels, status = current.get(entry.name, ({}, {}))
            for label, version in sorted(entry.labels.items()):
                moves = label in labels and labels[label] != version
                allowed = self.allow_labels_for_unavailable and not moves
                if not allowed and (version not in status or status[version].state != AVAILABLE):
                    raise unavailable_label(entry.name, version)
            checked[entry.name] = dict(entry.labels)
        return checked

    def _poll_config(self) -> None:
        while not self._stop.wait(self.config_poll_seconds):
            try:
                self.reload_config_file()
            except Exception:
                log.exception("Re-reading %s failed", self.config_file)

    def reload_config_file(self) -> bool:
        """Applies the config file if it changed since it was last applied; False when it is unchanged or refused
        (the refusal is logged once per content, and the file is tried again at each poll)."""
        text = ""
        try:
            text = _read(self.config_file)
            if text == self._config_text:
                return False
            self.apply(parse(text))
        except ServingError as error:
            if (text or str(error)) != self._refused:
                log.error("Config %s not applied, the served models are unchanged: %s", self.config_file, error)
                self._refused = text or str(error)
            return False
        self._config_text = text
        log.info("Applied the changed config %s", self.config_file)
        return True

    # Versions.

    def _poll_folders(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                with self._reload:
                    self._refresh_all()
            except Exception:  # a bad version or folder must not stop the polling
                log.exception("Polling the model folders failed")

    def refresh(self) -> None:
        """One poll of every model's folder, now."""
        with self._reload:
            self._refresh_all()

    def _refresh_all(self) -> None:
        with self._lock:
            models = list(self._models.items())
        for name, served in models:
            self._refresh(name, served)

    def _refresh(self, name: str, served: _Served) -> None:
        entry = served.entry
        if entry is None:
            aspired: list[int] = []
        elif not tf.io.gfile.isdir(entry.base_path):
            return  # as TF Serving: a missing (or unreachable) base path changes nothing
        else:
            on_disk = versions(entry.base_path)
            served.failed &= set(on_disk)  # a version pushed again under a failed number is tried again
            aspired = aspired_versions(entry.policy, on_disk)
            if not aspired:
                log.warning("No versions of %s under %s match its policy", name, entry.base_path)
        for version in aspired:
            if version not in served.loaded and version not in served.failed:
                self._load(name, served, version, os.path.join(entry.base_path, str(version)))
        any_aspired_available = any(v in served.loaded for v in aspired)
        for version in sorted(set(served.loaded) - set(aspired)):
            if not aspired or any_aspired_available:  # never leave the model with nothing to answer
                self._unload(name, served, version)

    def _load(self, name: str, served: _Served, version: int, path: str) -> None:
        with self._lock:
            served.status[version] = VersionStatus(LOADING)
        try:
            model = load(name, version, path, self.metrics)
        except Exception as error:
            log.error("Version %d of %s failed to load: %s", version, name, error)
            with self._lock:
                served.failed.add(version)
                served.status[version] = VersionStatus(END, _error_code(error), str(error).strip())
            return
        with self._lock:
            served.loaded[version] = model
            served.status[version] = VersionStatus(AVAILABLE)
        log.info("Serving version %d of %s", version, name)

    def _unload(self, name: str, served: _Served, version: int) -> None:
        with self._lock:
            served.status[version] = VersionStatus(UNLOADING)
            del served.loaded[version]  # requests already holding it finish; nothing else keeps it
            served.status[version] = VersionStatus(END)
        # Loading and tracing leave cyclic garbage (TensorFlow's graphs) that Python's collector may not reach for
        # many pushes: collected now, resident memory stays at one model plus room for the next (measured).
        gc.collect()
        log.info("Unloaded version %d of %s", version, name)

    # Requests.

    def _version_of_label(self, name: str, label: str) -> int:
        served = self._models.get(name)
        if served is None or label not in served.labels:
            raise invalid(f"Unrecognized servable version label: {label}")
        return served.labels[label]

    def get(self, name: str, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The version asked for (by number or label; the newest available when neither); TF Serving's errors
        when the label is unknown (INVALID_ARGUMENT) or the version is not being served (NOT_FOUND)."""
        with self._lock:
            if label is not None:
                version = self._version_of_label(name, label)
            served = self._models.get(name)
            loaded = served.loaded if served else {}
            if version is None:
                if loaded:
                    return loaded[max(loaded)]
                raise not_found(f"Servable not found for request: Latest({name})")
            if version in loaded:
                return loaded[version]
            raise not_found(f"Servable not found for request: Specific({name}, {version})")

    def states(self, name: str, version: int | None = None, label: str | None = None) -> dict[int, VersionStatus]:
        """Every version the server has known of this model, with its state, or the one asked for."""
        with self._lock:
            if label is not None:
                version = self._version_of_label(name, label)
            served = self._models.get(name)
            status = dict(served.status) if served else {}
        if version is not None:
            if version not in status:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: status[version]}
        if not status:
            raise not_found(f"Could not find any versions of model {name}")
        return status

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            served = self._models.get(name)
            return dict(served.labels) if served else {}

    def model_names(self) -> list[str]:
        with self._lock:
            return [name for name, served in self._models.items() if served.entry is not None]

    def current_version(self, name: str | None = None) -> int | None:
        """The newest available version of `name` (of the first configured model when not given)."""
        with self._lock:
            if name is None:
                name = self._entries[0].name if self._entries else ""
            served = self._models.get(name)
            return max(served.loaded) if served and served.loaded else None


def _read(path: str) -> str:
    try:
        with tf.io.gfile.GFile(path) as handle:
            return handle.read()
    except (tf.errors.OpError, OSError) as error:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"cannot read model config file {path}: {error}") from None
