"""What each request leaves behind: the server's Prometheus metrics and its access log line.

The metrics are named and labelled as TF Serving exports them on
`/monitoring/prometheus/metrics`, so that one dashboard reads both servers.

TF Serving turns a metric's path (`/tensorflow/serving/request_count`) into its Prometheus name by replacing each
`/` with `:`, times in microseconds, and writes counters without the `_total` suffix prometheus_client gives them:
the page is prometheus_client's text exposition with those suffixes (and its `_created` series) taken off.
Buckets are TF Serving's. One metric is the project's own, `:mura:serving:request_count`, which adds the version
and signature to TF Serving's request count (canary traffic per version).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
MICROS = 1e6
access = logging.getLogger("serving.access")


def log_access(client: str, method: str, path: str, status: object, seconds: float) -> None:
    """The access log: one INFO line per request, `client method path status latency`."""
    access.info("%s %s %s %s %.1f ms", client, method, path, status, seconds * 1000)


def exponential(scale: float, growth: float, count: int) -> list[float]:
    """TensorFlow's monitoring::Buckets::Exponential (the +Inf bucket is prometheus_client's), to the 6 significant
    digits TF Serving prints them with."""
    return [float(f"{scale * growth**i:.6g}") for i in range(count)]


LATENCY_BUCKETS = exponential(10, 1.8, 33)  # microseconds, up to ~20 minutes (TF Serving's request_latency)
BATCH_SIZE_BUCKETS = exponential(1, 2, 14)  # TF Serving's batching_session sizes
QUEUING_BUCKETS = exponential(100, 1.2, 52)  # microseconds, up to ~1 second


class _TfServingNames:
    """The registry's samples as TF Serving names them: counters without `_total`, no `_created` series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        for metric in self.registry.collect():
            samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if metric.type == "counter":
                samples = [s._replace(name=metric.name) for s in samples]
            metric.samples = samples
            yield metric


class Metrics:
    """One server's metrics (a registry of its own, so that servers in one process do not add up)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: list[str] = []  # their HELP and TYPE lines lose prometheus_client's `_total` in `page`
        self.request_count = self._counter(
            ":tensorflow:serving:request_count", "The total number of requests.", "model_name", "status"
        )
        self.request_latency = self._histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            LATENCY_BUCKETS,
            "model_name",
            "API",
            "entrypoint",
        )
        self.version_request_count = self._counter(
            ":mura:serving:request_count",
            "Requests that reached a model version, by version, signature and status.",
            "model_name",
            "version",
            "signature_name",
            "status",
        )
        self.input_batch_size = self._histogram(
            ":tensorflow:serving:batching_session:input_batch_size",
            "Tracks the batch size distribution on the inputs.",
            BATCH_SIZE_BUCKETS,
        )
        self.processed_batch_size = self._histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            BATCH_SIZE_BUCKETS,
        )
        self.queuing_latency = self._histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            QUEUING_BUCKETS,
            "thread_pool_name",
        )
        self.load_attempt_count = self._counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            "model_path",
            "status",
        )
        self.load_latency = self._counter(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            "model_path",
        )
        self.warmup_latency = self._histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            LATENCY_BUCKETS,
            "model_path",
            "status",
        )

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        self._counters.append(name)
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, buckets: list[float], *labels: str) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def request(self, model_name: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """A request answered, as TF Serving records it: counted by status, its latency only when OK."""
        self.request_count.labels(model_name, status).inc()
        if status == "OK":
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * MICROS)

    def version_request(self, model_name: str, version: int, signature_name: str, status: str) -> None:
        self.version_request_count.labels(model_name, str(version), signature_name, status).inc()

    def batch(self, sizes: list[int], waits: list[float]) -> None:
        """One batch run: each request's size and time queued, and the batch's size."""
        for size, wait in zip(sizes, waits, strict=True):
            self.input_batch_size.observe(size)
            self.queuing_latency.labels("batch_threads").observe(wait * MICROS)
        self.processed_batch_size.observe(sum(sizes))

    def model_loaded(self, path: str, ok: bool, seconds: float) -> None:
        self.load_attempt_count.labels(path, "success" if ok else "fail").inc()
        if ok:
            self.load_latency.labels(path).inc(seconds * MICROS)

    def model_warmed_up(self, path: str, seconds: float) -> None:
        self.warmup_latency.labels(path, "OK").observe(seconds * MICROS)

    def page(self) -> bytes:
        """The Prometheus text exposition, TF Serving's names."""
        text = generate_latest(_TfServingNames(self.registry)).decode()
        for name in self._counters:  # the family's HELP and TYPE lines, which prometheus_client suffixes
            text = text.replace(f"# HELP {name}_total ", f"# HELP {name} ")
            text = text.replace(f"# TYPE {name}_total ", f"# TYPE {name} ")
        return text.encode()
