"""What every benchmark shares: timing, the machine's description, the printed tables and docs/PERFORMANCE.md.

Each benchmark returns a `Section`; its figures are ratios against a baseline measured in the same run, because
absolute timings on a shared machine move with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

DOC = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
ORDER = ("input_pipeline", "ingestion", "training_step", "serving", "end_to_end")  # sections in the document


@dataclass(frozen=True)
class Comparison:
    """One claim: a figure beside its baseline, their ratio, and the target it has to meet (if any)."""

    what: str
    measured: float
    baseline: float
    baseline_name: str
    unit: str
    target: float | None = None  # the ratio measured/baseline must reach it (or stay under it, see `at_most`)
    at_most: bool = False  # latency-like: smaller is better

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio <= self.target if self.at_most else self.ratio >= self.target

    def row(self) -> list[str]:
        target = "" if self.target is None else f"{'<=' if self.at_most else '>='} {self.target:g}x"
        met = {None: "", True: "yes", False: "**no**"}[self.met]
        return [
            self.what,
            f"{fmt(self.measured)} {self.unit}",
            f"{fmt(self.baseline)} {self.unit} ({self.baseline_name})",
            f"{self.ratio:.2f}x",
            target,
            met,
        ]


@dataclass
class Section:
    key: str  # the module name, e.g. "serving"
    title: str
    setup: str  # what was run, with which sizes
    comparisons: list[Comparison] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[object]]]] = field(default_factory=list)  # caption, headers, rows
    notes: str = ""  # what bounds a figure, found by profiling
    quick: bool = False
    seconds: float = 0.0
    measured: str = ""  # when the figures were measured, if not now (a section redrawn from kept records)

    def markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        when = self.measured or datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        sizes = "quick sizes, not representative" if self.quick else "full sizes"
        parts += [f"Measured {when} by `python -m bench.{self.key}` ({sizes}, {self.seconds:.0f} s).", ""]
        parts += [self.setup.strip(), ""]
        if self.comparisons:
            parts += [comparison_table(self.comparisons, "github"), ""]
        for caption, headers, rows in self.tables:
            parts += [f"{caption}:", "", tabulate(rows, headers, tablefmt="github", disable_numparse=True), ""]
        if self.notes:
            parts += [self.notes.strip(), ""]
        return "\n".join(parts)

    def text(self) -> str:
        parts = [f"== {self.title} ({self.seconds:.0f} s) =="]
        if self.comparisons:
            parts.append(comparison_table(self.comparisons, "simple"))
        for caption, headers, rows in self.tables:
            parts += [f"{caption}:", tabulate(rows, headers, tablefmt="simple", disable_numparse=True)]
        return "\n".join(parts)


def save_section(section: Section, path: Path) -> None:
    path.write_text(json.dumps(dataclasses.asdict(section)))


def load_section(path: Path) -> Section:
    fields = json.loads(path.read_text())
    fields["comparisons"] = [Comparison(**c) for c in fields["comparisons"]]
    fields["tables"] = [tuple(table) for table in fields["tables"]]
    return Section(**fields)


def comparison_table(comparisons: Sequence[Comparison], tablefmt: str) -> str:
    headers = ["figure", "measured", "baseline", "ratio", "target", "met?"]
    return tabulate([c.row() for c in comparisons], headers, tablefmt=tablefmt, disable_numparse=True)


def fmt(value: float) -> str:
    """Three significant figures, without scientific notation for the magnitudes a benchmark sees."""
    if value == 0 or value != value:
        return str(value)
    digits = max(0, 2 - int(f"{abs(value):e}".split("e")[1]))
    return f"{value:,.{digits}f}"


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples, a value that was really measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """CPU model, cores, memory, TensorFlow and Python versions: what the figures were measured on."""
    import tensorflow as tf

    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        models = re.findall(r"^model name\s*:\s*(.+)$", handle.read(), re.MULTILINE)
    if models:
        cpu = models[0].strip()
    with open("/proc/meminfo") as handle:
        kib = int(re.search(r"MemTotal:\s+(\d+)", handle.read())[1])
    cores = len(os.sched_getaffinity(0))
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (
        f"{cpu}, {cores} cores available, {kib / 2**20:.0f} GiB memory, {gpus or 'no'} GPU; "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


HEADER = """# Performance

Written by `make bench` (`python -m bench`); each section can be refreshed alone with `python -m bench.<name>`.
Every figure is a ratio against a baseline measured side by side in the same run on the same machine, because
absolute timings move with whatever else the machine runs. Machine of the last run: {machine}.
"""


def write_section(section: Section | None, path: Path = DOC, preamble: str = "") -> None:
    """Replaces this section (and the summary, when given) in the document; the rest stays."""
    sections = {}
    if path.exists():
        text = path.read_text()
        for key, body in re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", text, re.DOTALL):
            if key != "summary":  # the summary has a place of its own, before the sections
                sections[key] = body
        found = re.search(r"<!-- bench:summary -->\n(.*?)<!-- /bench:summary -->", text, re.DOTALL)
        preamble = preamble or (found[1] if found else "")
    if section is not None:
        sections[section.key] = section.markdown() + "\n"
    parts = [HEADER.format(machine=machine())]
    if preamble:
        parts.append(f"<!-- bench:summary -->\n{preamble.strip()}\n<!-- /bench:summary -->\n")
    for key in sorted(sections, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        parts.append(f"<!-- bench:{key} -->\n{sections[key]}<!-- /bench:{key} -->\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def main(run: Callable[[Path, bool], Section], description: str) -> None:
    """The command line every benchmark shares: --quick, --workdir, --output."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{Path(sys.argv[0]).stem}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (figures meaningless)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where synthetic data and models go, reused when present (default: a temporary folder, removed)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"the document to update (default: {DOC.relative_to(DOC.parent.parent)}; with --quick, none)",
    )
    parser.add_argument("--section-json", type=Path, help=argparse.SUPPRESS)  # for python -m bench's summary
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="mura-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        section = run(workdir, args.quick)
        section.seconds, section.quick = time.perf_counter() - start, args.quick
    print(section.text(), flush=True)
    if args.section_json:
        save_section(section, args.section_json)
    output = args.output or (None if args.quick else DOC)
    if output:
        write_section(section, output)
        print(f"Written to {output}")
