"""Server-side batching, as TF Serving's BatchingParameters: concurrent requests to the same signature are
concatenated along the batch dimension, run once, and split back.

A batch closes when it holds `max_batch_size` examples or its first request has waited `timeout` seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

Inputs = dict[str, np.ndarray]
Run = Callable[[Inputs], Inputs]


@dataclass
class _Task:
    inputs: Inputs
    size: int
    future: Future = field(default_factory=Future)


def _compatible(a: Inputs, b: Inputs) -> bool:
    return a.keys() == b.keys() and all(a[k].shape[1:] == b[k].shape[1:] and a[k].dtype == b[k].dtype for k in a)


class Batcher:
    """One queue and one worker thread per key (model version, signature)."""

    def __init__(self, max_batch_size: int, timeout_seconds: float) -> None:
        self.max_batch_size, self.timeout = max_batch_size, timeout_seconds
        self._queues: dict[tuple, queue.Queue] = {}
        self._lock = threading.Lock()

    def submit(self, key: tuple, run: Run, inputs: Inputs) -> Inputs:
        sizes = {len(v) for v in inputs.values()}
        if self.max_batch_size <= 1 or len(sizes) != 1:
            return run(inputs)
        task = _Task(inputs, sizes.pop())
        self._queue(key, run).put(task)
        return task.future.result()

    def _queue(self, key: tuple, run: Run) -> queue.Queue:
        with self._lock:
            if key not in self._queues:
                self._queues[key] = queue.Queue()
                threading.Thread(target=self._work, args=(self._queues[key], run), daemon=True).start()
            return self._queues[key]

    def _work(self, tasks: queue.Queue, run: Run) -> None:
        while True:
            batch = [tasks.get()]
            size = batch[0].size
            deadline = time.monotonic() + self.timeout
            while size < self.max_batch_size and (remaining := deadline - time.monotonic()) > 0:
                try:
                    task = tasks.get(timeout=remaining)
                except queue.Empty:
                    break
                if size + task.size > self.max_batch_size or not _compatible(task.inputs, batch[0].inputs):
                    self._run([task], run)  # does not fit this batch: runs on its own
                    continue
                batch.append(task)
                size += task.size
            self._run(batch, run)

    @staticmethod
    def _run(batch: list[_Task], run: Run) -> None:
        try:
            if len(batch) == 1:
                batch[0].future.set_result(run(batch[0].inputs))
                return
            merged = {name: np.concatenate([t.inputs[name] for t in batch]) for name in batch[0].inputs}
            outputs = run(merged)
            start = 0
            for task in batch:
                task.future.set_result({k: v[start : start + task.size] for k, v in outputs.items()})
                start += task.size
        except Exception as error:
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(error)
