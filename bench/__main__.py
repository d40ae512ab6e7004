"""Runs every benchmark, each in its own process as the project runs that code (the Trainer's process settings
for the pipeline's benchmarks, `mura serve`'s for serving), on one shared synthetic MURA, and writes
docs/PERFORMANCE.md: each section, and a summary of the targets with the run's total time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from bench import report

# Ingestion first: it draws the shared 5,000-image sample the next ones read.
BENCHMARKS = ("ingestion", "input_pipeline", "training_step", "serving", "end_to_end")


def summary(sections: list[report.Section], failed: list[str], seconds: float, quick: bool) -> str:
    rows = [
        [section.title.split(":")[0], *comparison.row()]
        for section in sections
        for comparison in section.comparisons
        if comparison.target is not None
    ]
    headers = ["benchmark", "figure", "measured", "baseline", "ratio", "target", "met?"]
    lines = [
        f"`make bench` took {seconds / 60:.1f} minutes{' (quick sizes)' if quick else ''}. The targets:",
        "",
        tabulate(rows, headers, tablefmt="github", disable_numparse=True),
    ]
    if any(row[-1] != "yes" for row in rows):
        lines += ["", 'Where a target is missed, its section below names the measured bound ("What bounds it").']
    if failed:
        lines += ["", f"Failed, see the log: {', '.join(failed)}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs (figures meaningless)")
    parser.add_argument("--workdir", type=Path, help="synthetic data and models, reused when present")
    parser.add_argument("--output", type=Path, help="the document (default: docs/PERFORMANCE.md; with --quick, none)")
    args = parser.parse_args()
    output = args.output or (None if args.quick else report.DOC)
    start = time.perf_counter()
    sections, failed = [], []
    with tempfile.TemporaryDirectory(prefix="mura-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in BENCHMARKS:
            section_json = workdir / f"{name}.section.json"
            command = [sys.executable, "-m", f"bench.{name}", "--workdir", str(workdir)]
            command += ["--section-json", str(section_json)]
            command += ["--quick"] * args.quick + (["--output", str(output)] if output else [])
            if subprocess.run(command).returncode != 0:
                failed.append(name)
                continue
            sections.append(report.load_section(section_json))
    text = summary(sections, failed, time.perf_counter() - start, args.quick)
    print(text)
    if output:
        report.write_section(None, output, preamble=text)
        print(f"Written to {output}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
