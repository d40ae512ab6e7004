"""Server-side batching, as TF Serving's BatchingParameters: concurrent requests to the same signature are
concatenated along the batch dimension, run once, and split back.

Only signatures whose every input and output has the batch dimension are batched (the caller says so, from the
signature's shapes); the others run alone, as each request came: a study signature answers one mean per call, and
two studies concatenated would get one mean between them. (TF Serving's own batching has no such exception: with
`--enable_batching` it refuses a request with a scalar input, "Batching session Run() input tensors must have at
least one dimension".)

A batch closes when it holds `max_batch_size` examples or its first request has waited `timeout` seconds. Requests
are queued per key (model name, signature); each request carries the model version that runs it, and only
requests of one version (and of compatible shapes) share a batch. Nothing in a queue or a worker outlives the
requests: a replaced version is released as soon as its last request is answered, and a worker whose queue stays
empty for `idle_seconds` ends, so a signature or a model that is no longer asked for holds no thread either.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

Inputs = dict[str, np.ndarray]
Run = Callable[[Inputs], Inputs]
IDLE_SECONDS = 30.0


@dataclass
class _Task:
    inputs: Inputs
    size: int
    group: Hashable  # the model version: only tasks of one group share a batch
    run: Run
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def _compatible(a: _Task, b: _Task) -> bool:
    return (
        a.group == b.group
        and a.inputs.keys() == b.inputs.keys()
        and all(x.shape[1:] == b.inputs[k].shape[1:] and x.dtype == b.inputs[k].dtype for k, x in a.inputs.items())
    )


class Batcher:
    """One queue and one worker thread per key, while the key has requests."""

    def __init__(
        self,
        max_batch_size: int,
        timeout_seconds: float,
        idle_seconds: float = IDLE_SECONDS,
        on_batch: Callable[[list[int], list[float]], None] | None = None,
    ) -> None:
        """`on_batch(sizes, waits)`: each request's size and seconds queued, once per batch run (for metrics)."""
        self.max_batch_size, self.timeout, self.idle_seconds = max_batch_size, timeout_seconds, idle_seconds
        self.on_batch = on_batch
        self._queues: dict[Hashable, queue.SimpleQueue] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, group: Hashable, run: Run, inputs: Inputs, batchable: bool = True) -> Inputs:
        """`batchable` False: `run` answers the request as a whole, so it runs alone."""
        if not batchable or self.max_batch_size <= 1:
            return run(inputs)
        sizes = {len(v) for v in inputs.values()}
        if len(sizes) != 1:  # no one batch size: the model says what is wrong with the request
            return run(inputs)
        task = _Task(inputs, sizes.pop(), group, run)
        with self._lock:  # a worker retires under the same lock, so it never leaves a task behind
            if key not in self._queues:
                self._queues[key] = queue.SimpleQueue()
                name = "batch-" + "-".join(map(str, key if isinstance(key, tuple) else (key,)))
                threading.Thread(target=self._work, args=(key, self._queues[key]), name=name, daemon=True).start()
            self._queues[key].put(task)
        return task.future.result()

    def workers(self) -> int:
        with self._lock:
            return len(self._queues)

    def _work(self, key: Hashable, tasks: queue.SimpleQueue) -> None:
        pending: deque[_Task] = deque()  # taken from the queue, waiting for a batch of their own version
        while True:
            if not pending:
                try:
                    pending.append(tasks.get(timeout=self.idle_seconds))
                except queue.Empty:
                    with self._lock:
                        if tasks.empty():
                            del self._queues[key]
                            return
                    continue
            batch = self._collect(pending, tasks)
            self._run(batch)
            del batch  # no reference to a task (its model) while waiting for the next one

    def _collect(self, pending: deque[_Task], tasks: queue.SimpleQueue) -> list[_Task]:
        """The oldest pending task and every task that may join it (pending or arriving before its deadline);
        the others stay pending, in order."""
        first = pending.popleft()
        batch, size, others = [first], first.size, deque()

        def offer(task: _Task) -> None:
            nonlocal size
            if size + task.size <= self.max_batch_size and _compatible(first, task):
                batch.append(task)
                size += task.size
            else:
                others.append(task)

        while pending:
            offer(pending.popleft())
        deadline = first.enqueued + self.timeout
        queued = tasks.qsize()  # arrived while the last batch ran: they join even when the deadline has passed
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    offer(tasks.get(timeout=remaining))
                elif queued > 0:
                    offer(tasks.get_nowait())
                else:
                    break
            except queue.Empty:
                break
            queued -= 1
        pending.extend(others)
        return batch

    def _run(self, batch: list[_Task]) -> None:
        if self.on_batch is not None:
            now = time.monotonic()
            self.on_batch([t.size for t in batch], [now - t.enqueued for t in batch])
        run = batch[0].run
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
