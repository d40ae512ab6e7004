"""What a long `mura pipeline run` says while it runs, without `--verbose`: each component as it starts and how
long it took (or that TFX's cache answered), and the Trainer's one line per epoch.

TFX, Beam and TensorFlow log everything at INFO; their lines stay hidden, and only these are picked out: the
Beam runner's "node X is running/finished", the launcher's "cached execution", and the Trainer's epoch lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from components.modules.trainer import PROGRESS_LOGGER

_RUNNING, _FINISHED, _CACHED = "node %s is running.", "node %s is finished.", "A cached execution %d is used."


class ComponentProgress(logging.Handler):
    """Turns TFX's per-node log records into one line per component."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.echo, self.started, self.cached = echo, {}, set()
        self.current: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _RUNNING:
            self.current = node = str(record.args[0])
            self.started[node] = time.monotonic()
            self.echo(f"  {time.strftime('%H:%M:%S')}  {node} ...")
        elif record.msg == _CACHED and self.current:
            self.cached.add(self.current)
        elif record.msg == _FINISHED:
            node = str(record.args[0])
            seconds = time.monotonic() - self.started.get(node, time.monotonic())
            how = "from TFX's cache" if node in self.cached else f"done in {seconds:.1f} s"
            self.echo(f"  {time.strftime('%H:%M:%S')}  {node}: {how}")


class Echo(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.echo(f"    {record.getMessage()}")


def show_progress(echo: Callable[[str], None]) -> ComponentProgress:
    """Installs the handlers (after the CLI has quietened the rest); returns the one that knows which component
    is running."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    for handler in logging.getLogger().handlers:  # absl's handler, and any other, on the root logger
        handler.setLevel(logging.CRITICAL)
    components = ComponentProgress(echo)
    logging.getLogger("absl").addHandler(components)
    epochs = logging.getLogger(PROGRESS_LOGGER)
    epochs.setLevel(logging.INFO)
    epochs.addHandler(Echo(echo))
    return components
