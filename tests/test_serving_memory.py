"""A server that stays up: a dozen versions pushed one after another under concurrent requests, and every replaced
version released (no thread, queue or closure keeps it), the thread count and resident memory flat."""

import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mura.config import ServingConfig
from serving.client import GrpcClient, RestClient
from serving.server import start
from tests.small_models import add_version, export, png

PUSHES = 12
BALLAST = 2 << 20  # float32 weights per version: 8 MB, so that 11 versions kept would add about 90 MB
MEMORY_BOUND_MB = 40  # growth allowed between the first push and the last (measured: under 10 MB)
THREAD_BOUND = 4  # growth allowed in the thread count (the gRPC pool starting workers as load varies)
IMAGES = [png(seed) for seed in range(4)]


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def wait_for_version(server, version: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while server.store.current_version() != version:
        assert time.monotonic() < deadline, f"version {version} was not served within {seconds} s"
        time.sleep(0.05)


@pytest.mark.local_only
def test_pushed_versions_under_load_are_released_and_memory_and_threads_stay_flat(tmp_path: Path) -> None:
    source = export(tmp_path / "source", marker=0.25, ballast=BALLAST)
    base = tmp_path / "mura"
    base.mkdir()
    add_version(base, 1, source)
    server = start(str(base), ServingConfig(grpc_port=0, rest_port=0, poll_seconds=0.05, batch_timeout_micros=2000))
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", retries=0)
    grpc_client = GrpcClient(f"127.0.0.1:{server.grpc_port}", retries=0)
    released, threads, memory, answers = [], [], [], []
    try:
        for version in range(1, PUSHES + 1):
            if version > 1:
                add_version(base, version, source)
                wait_for_version(server, version)
            model = server.store.get("mura")
            assert model.version == version
            released.append((weakref.ref(model), weakref.ref(model.saved_model)))
            del model
            with ThreadPoolExecutor(8) as pool:  # both transports at once, one image each: batched together
                answers += pool.map(lambda i: (rest, grpc_client)[i % 2].predict([IMAGES[i % 4]]), range(32))
            gc.collect()
            threads.append(threading.active_count())
            memory.append(resident_mb())
    finally:
        grpc_client.close()
        server.stop()
    assert len(answers) == 32 * PUSHES and {(p.probability, p.abnormal) for [p] in answers} == {(0.25, 0)}
    kept = [index + 1 for index, refs in enumerate(released[:-1]) if any(ref() is not None for ref in refs)]
    assert kept == [], f"versions {kept} are still referenced after being replaced"
    assert max(threads) <= threads[0] + THREAD_BOUND, f"threads after each push: {threads}"
    growth = max(memory) - memory[0]
    assert growth < MEMORY_BOUND_MB, f"resident MB after each push: {[round(m) for m in memory]}"
