"""Server-side batching: concurrent requests share one model call and each gets exactly its own rows back."""

import threading
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
        results = list(pool.map(lambda x: batcher.submit(("m", 1), run, {"x": x}), requests))
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 10)
    assert sum(calls) == 24 and len(calls) < 8


def test_batches_never_exceed_the_maximum_and_batching_can_be_off() -> None:
    run, calls = recording_model()
    batcher = Batcher(max_batch_size=4, timeout_seconds=0.2)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: batcher.submit(("m", 1), run, {"x": np.ones(2)}), range(8)))
    assert max(calls) <= 4 and sum(calls) == 16
    run, calls = recording_model()
    off = Batcher(max_batch_size=1, timeout_seconds=0.2)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: off.submit(("m", 1), run, {"x": np.ones(2)}), range(4)))
    assert calls == [2, 2, 2, 2]


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    def broken(inputs):
        raise ValueError("no")

    batcher = Batcher(max_batch_size=8, timeout_seconds=0.05)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.submit, ("m", 1), broken, {"x": np.ones(1)}) for _ in range(3)]
    assert all(isinstance(f.exception(), ValueError) for f in futures)
