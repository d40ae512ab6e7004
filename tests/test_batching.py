"""Server-side batching: concurrent requests share one model call and each gets exactly its own rows back; requests
of two versions never share a call; nothing is kept once the requests are answered."""

import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.batching import Batcher


def recording_model():
    calls: list[int] = []
    lock = threading.Lock()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 10, "tag": np.full(len(inputs["x"]), len(calls))}

    return run, calls


def test_concurrent_requests_are_batched_and_split_back() -> None:
    run, calls = recording_model()
    batcher = Batcher(max_batch_size=32, timeout_seconds=0.2)
    requests = [np.arange(i, i + 3, dtype=np.float32) for i in range(0, 24, 3)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda x: batcher.submit(("m", "sig"), 1, run, {"x": x}), requests))
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 10)
    assert sum(calls) == 24 and len(calls) < 8


def test_batches_never_exceed_the_maximum_and_batching_can_be_off() -> None:
    run, calls = recording_model()
    batcher = Batcher(max_batch_size=4, timeout_seconds=0.2)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: batcher.submit(("m", "sig"), 1, run, {"x": np.ones(2)}), range(8)))
    assert max(calls) <= 4 and sum(calls) == 16
    run, calls = recording_model()
    off = Batcher(max_batch_size=1, timeout_seconds=0.2)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: off.submit(("m", "sig"), 1, run, {"x": np.ones(2)}), range(4)))
    assert calls == [2, 2, 2, 2]


def test_requests_that_queue_while_a_batch_runs_make_the_next_batch_together() -> None:
    """The model runs longer than the batch timeout: the requests that wait meanwhile are one batch, not one call
    each (a lone first request, then the other seven at once)."""
    calls: list[int] = []

    def slow(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        time.sleep(0.3)
        return {"y": inputs["x"]}

    batcher = Batcher(max_batch_size=32, timeout_seconds=0.01)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, ("m", "sig"), 1, slow, {"x": np.ones(1)})
        time.sleep(0.1)  # the first batch (of one) is running now
        rest = [pool.submit(batcher.submit, ("m", "sig"), 1, slow, {"x": np.ones(1)}) for _ in range(7)]
        assert [f.result()["y"].tolist() for f in [first, *rest]] == [[1.0]] * 8
    assert calls == [1, 7]


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    def broken(inputs):
        raise ValueError("no")

    batcher = Batcher(max_batch_size=8, timeout_seconds=0.05)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.submit, ("m", "sig"), 1, broken, {"x": np.ones(1)}) for _ in range(3)]
    assert all(isinstance(f.exception(), ValueError) for f in futures)


def test_requests_of_two_versions_share_a_queue_but_never_a_batch() -> None:
    """One queue per signature: a version swap mid-traffic sends each request through the version it asked for."""
    old, old_calls = recording_model()
    new, new_calls = recording_model()
    batcher = Batcher(max_batch_size=64, timeout_seconds=0.2)
    versions = [(1, old), (2, new)] * 8
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda vr: batcher.submit(("m", "sig"), vr[0], vr[1], {"x": np.full(2, vr[0], float)}), versions)
        )
    assert sum(old_calls) == sum(new_calls) == 16 and len(old_calls) + len(new_calls) < 16
    for (version, _), result in zip(versions, results, strict=True):
        np.testing.assert_array_equal(result["y"], [version * 10, version * 10])
    assert batcher.workers() == 1


class Model:
    def __call__(self, inputs):
        return {"y": inputs["x"] + 1}


def test_an_idle_worker_ends_and_no_model_outlives_its_requests() -> None:
    batches: list[tuple[list[int], list[float]]] = []
    batcher = Batcher(max_batch_size=8, timeout_seconds=0.05, idle_seconds=0.2, on_batch=lambda *b: batches.append(b))
    model = Model()
    released = weakref.ref(model)
    before = threading.active_count()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _, m=model: batcher.submit(("m", "sig"), 1, m, {"x": np.ones(1)}), range(4)))
    del model
    gc.collect()
    assert released() is None, "the batcher keeps a model whose requests were all answered"
    assert sum(len(sizes) for sizes, _ in batches) == 4 and all(w >= 0 for _, waits in batches for w in waits)
    deadline = time.monotonic() + 10
    while batcher.workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.workers() == 0 and threading.active_count() <= before
    assert batcher.submit(("m", "sig"), 2, Model(), {"x": np.zeros(1)})["y"].tolist() == [1.0]  # a new worker


def test_a_signature_without_the_batch_dimension_runs_each_request_alone() -> None:
    """A study's mean: concatenated, four studies would get one mean between them."""
    calls: list[int] = []

    def mean(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"mean": np.mean(inputs["x"])}

    batcher = Batcher(max_batch_size=32, timeout_seconds=0.2)
    studies = [np.full(size, float(size)) for size in (1, 2, 3, 4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda x: batcher.submit(("m", "study"), 1, mean, {"x": x}, batchable=False), studies))
    assert [float(answer["mean"]) for answer in answers] == [1.0, 2.0, 3.0, 4.0]
    assert sorted(calls) == [1, 2, 3, 4] and batcher.workers() == 0
