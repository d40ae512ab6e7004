"""End to end: `make demo` itself, timed, for each training recipe tried, and the model it pushed scored on a fresh
synthetic sample it never saw (another seed, a third of its images sent as resized JPEG).

Each recipe is `make demo` with its sample size and a few settings changed (as `MURA_<SECTION>_<FIELD>` variables,
the way a user would); the wall time is the whole command's: drawing the sample, the audit, the pipeline, the
report and the served answers. Every measured recipe is kept in docs/demo_recipes.json with its date, so recipes
measured in different runs share one figure of test AUROC against wall minutes (docs/demo_tradeoff.png).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import report

REPO = Path(__file__).resolve().parent.parent
RECORDS = REPO / "docs" / "demo_recipes.json"
FIGURE = REPO / "docs" / "demo_tradeoff.png"
TARGET_MINUTES, TARGET_AUROC = 15.0, 0.90
FRESH_SEED, FRESH_STUDIES, JPEG_SHARE = 1, 30, 3  # every third image of the fresh sample goes as JPEG
NOTES = """
What bounds it. Almost all of make demo's time is the Trainer (the table above), and the Trainer's time is images
times epochs at about 70 images a second (a from-scratch ResNet50V2 at 64 px on 2 cores; the training step
section). 15 minutes leave room for about 10 epochs of 4,288 images once the sample, the other components, the
report and the served answers have had their 3 to 4 minutes; the network was still improving at its last epoch.
Reaching 0.90 took about 65,000 image passes in an earlier run (25 epochs of 2,606 images, 36 minutes). The
levers tried one at a time (schedule, sample size, progressive resizing, augmentation) and their measured effect:
README, "The demo profile".
"""


@dataclass(frozen=True)
class Recipe:
    what: str
    studies: int  # make demo's DEMO_STUDIES
    settings: dict[str, object] = field(default_factory=dict)  # SECTION.FIELD -> value, on top of the demo profile


# The demo profile's training before the cosine schedule (25 epochs at 1e-3, tenfold drops on a stalled eval loss).
PLATEAU = {
    "train.learning_rate_schedule": "plateau",
    "train.finetune_epochs": 25,
    "train.finetune_learning_rate": 1e-3,
    "train.early_stopping_patience": 8,
    "train.reduce_lr_patience": 4,
}
RECIPES = {
    "demo": Recipe("make demo as shipped (the demo profile, DEMO_STUDIES of the Makefile)", studies=0),
    "plateau-100": Recipe("the previous make demo: 100 studies, the plateau schedule", 100, PLATEAU),
    "plateau-150": Recipe("the plateau schedule on 150 studies", 150, PLATEAU),
    "cosine-100": Recipe("the demo profile on 100 studies", 100),
    "cosine-7": Recipe("the demo profile with 7 epochs", 250, {"train.finetune_epochs": 7}),
}


def make_default_studies() -> int:
    """DEMO_STUDIES as the Makefile sets it."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("DEMO_STUDIES ?="):
            return int(line.split("=", 1)[1])
    raise LookupError("DEMO_STUDIES is not set in the Makefile")


def environment(recipe: Recipe) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MURA_")}
    for key, value in recipe.settings.items():
        section, name = key.split(".")
        env[f"MURA_{section.upper()}_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def run_demo(recipe: Recipe, folder: Path, log: Path, extra: tuple[str, ...] = ()) -> float:
    """Wall seconds of `make demo` for this recipe, its output in `log`; fails loudly when make fails."""
    command = ["make", "-C", str(REPO), "demo", f"DEMO_DIR={folder}", f"DEMO_STUDIES={recipe.studies}", *extra]
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, env=environment(recipe), stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}); its output: {log}")
    return seconds


def fresh_images(workdir: Path) -> tuple[list[bytes], list[int], list[bool]]:
    """Every image of a sample drawn with another seed, a third re-encoded as JPEG at 60-90 % of its size, as
    images arrive from elsewhere: (encoded bytes, labels, is JPEG)."""
    import numpy as np
    from PIL import Image

    from mura.config import SampleConfig
    from mura.reader import read_mura
    from mura.synthetic.dataset import write_sample

    root = workdir / f"fresh-{FRESH_SEED}"
    if not (root / ".complete").exists():
        write_sample(root, SampleConfig(studies_per_part=FRESH_STUDIES, seed=FRESH_SEED, max_side=256), progress=False)
        (root / ".complete").touch()
    rng = np.random.default_rng(FRESH_SEED)
    images, labels, jpeg = [], [], []
    for index, record in enumerate(read_mura(str(root), progress=False).images):
        data = Path(record.path).read_bytes()
        as_jpeg = index % JPEG_SHARE == 0
        if as_jpeg:
            picture = Image.open(io.BytesIO(data)).convert("L")
            scale = rng.uniform(0.6, 0.9)
            picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=85)
            data = buffer.getvalue()
        images.append(data)
        labels.append(record.label)
        jpeg.append(as_jpeg)
    return images, labels, jpeg


def fresh_auroc(model_dir: str, workdir: Path) -> dict[str, float]:
    """Image-level AUROC of the served signature on the fresh sample: all, PNG only, JPEG only."""
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from mura.signatures import IMAGES_INPUT, PROBABILITY, SERVING_DEFAULT

    images, labels, jpeg = fresh_images(workdir)
    predict = tf.saved_model.load(model_dir).signatures[SERVING_DEFAULT]
    scores = np.concatenate(
        [
            predict(**{IMAGES_INPUT: tf.constant(images[start : start + 64])})[PROBABILITY].numpy()
            for start in range(0, len(images), 64)
        ]
    )
    labels, jpeg = np.asarray(labels), np.asarray(jpeg)
    return {
        "all": float(roc_auc_score(labels, scores)),
        "png": float(roc_auc_score(labels[~jpeg], scores[~jpeg])),
        "jpeg": float(roc_auc_score(labels[jpeg], scores[jpeg])),
        "images": len(labels),
    }


def measure(name: str, recipe: Recipe, workdir: Path, extra: tuple[str, ...] = ()) -> dict[str, object]:
    from analysis.summaries import read_pipeline_summary
    from mura.config import metadata_location

    folder = workdir / name
    seconds = run_demo(recipe, folder, workdir / f"{name}.log", extra)
    metadata = metadata_location(str(folder / "pipeline"))
    summary = read_pipeline_summary(metadata)
    overall = summary.image_table[-1]
    return {
        "recipe": name,
        "what": recipe.what,
        "studies": recipe.studies,
        "settings": recipe.settings,
        "wall_minutes": seconds / 60,
        "test_auroc": overall["auc"],
        "study_kappa": summary.table[-1]["kappa"],
        "pushed": bool(summary.pushed_to),
        "fresh": fresh_auroc(summary.pushed_to, workdir) if summary.pushed_to else None,
        "components": component_seconds(metadata),
        "measured": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def component_seconds(metadata_path: str) -> list[tuple[str, float]]:
    """(component, seconds) of every execution in the newest pipeline run, in the order they ran."""
    from analysis.metadata import execution_seconds, open_store, pipeline_runs, run_executions

    store = open_store(metadata_path)
    executions = run_executions(store, pipeline_runs(store)[0])
    ordered = sorted(executions.items(), key=lambda item: item[1].create_time_since_epoch)
    return [(name, execution_seconds(execution)) for name, execution in ordered]


def load_records() -> dict[str, dict]:
    return {record["recipe"]: record for record in json.loads(RECORDS.read_text())} if RECORDS.exists() else {}


def draw(records: list[dict], path: Path) -> None:
    """Test AUROC (filled) and fresh-sample AUROC (hollow) against wall minutes, the targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.axhline(TARGET_AUROC, color="grey", linestyle="--", linewidth=0.8)
    axes.axvline(TARGET_MINUTES, color="grey", linestyle="--", linewidth=0.8)
    for record in records:
        x = record["wall_minutes"]
        axes.scatter(x, record["test_auroc"], color="tab:blue", zorder=3)
        if record["fresh"]:
            axes.scatter(x, record["fresh"]["all"], facecolors="none", edgecolors="tab:orange", zorder=3)
        axes.annotate(record["recipe"], (x, record["test_auroc"]), textcoords="offset points", xytext=(6, 4))
    axes.scatter([], [], color="tab:blue", label="test split (TFMA, image AUROC)")
    axes.scatter([], [], facecolors="none", edgecolors="tab:orange", label="fresh sample, another seed, 1/3 JPEG")
    axes.set_xlabel("wall minutes of the whole make demo (2 cores)")
    axes.set_ylabel("image-level AUROC")
    axes.set_title("make demo: quality against time, per recipe")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section(records: list[dict], latest: dict, quick: bool) -> report.Section:
    shipped = records[0] if records and records[0]["recipe"] == "demo" else latest
    rows = [
        [
            r["recipe"],
            r["what"],
            r["studies"],
            f"{r['wall_minutes']:.1f}",
            f"{r['test_auroc']:.3f}",
            "" if not r["fresh"] else f"{r['fresh']['all']:.3f} ({r['fresh']['png']:.3f} / {r['fresh']['jpeg']:.3f})",
            f"{r['study_kappa']:.3f}",
            "yes" if r["pushed"] else "no",
            r["measured"],
        ]
        for r in records
    ]
    wall = sum(seconds for _, seconds in latest["components"])
    by_component = [
        [name, report.fmt(seconds), f"{100 * seconds / wall:.0f} %"] for name, seconds in latest["components"]
    ]
    headers = ["recipe", "what", "studies", "minutes", "test AUROC", "fresh AUROC", "study kappa", "pushed", "measured"]
    return report.Section(
        key="end_to_end",
        title="End to end: make demo, quality against wall time",
        setup=(
            "`python -m bench.end_to_end --recipe NAME` runs `make demo` itself (sample, audit, the whole pipeline "
            "behind the real gate, report, served answers) with the recipe's `DEMO_STUDIES` and settings, times the "
            "whole command, reads the test split's image-level AUROC (TFMA, overall) and study kappa from the run, "
            f"and scores the pushed model's `serving_default` on a fresh sample (seed {FRESH_SEED}, "
            f"{FRESH_STUDIES} studies per part, every {JPEG_SHARE}rd image re-encoded as JPEG at 60-90 % of its size). "
            "Records from earlier runs are kept in `docs/demo_recipes.json` with their date.\n\n"
            "![test AUROC against wall minutes](demo_tradeoff.png)"
        ),
        comparisons=[
            report.Comparison(
                "make demo wall time", shipped["wall_minutes"], TARGET_MINUTES, "target", "min", 1.0, at_most=True
            ),
            report.Comparison("make demo test AUROC", shipped["test_auroc"], TARGET_AUROC, "target", "", 1.0),
        ],
        tables=[
            (
                "Recipes (fresh sample: all images (PNG / JPEG))",
                headers,
                rows,
            ),
            (
                f"Pipeline components of the last run ({latest['recipe']})",
                ["component", "seconds", "share"],
                by_component,
            ),
        ],
        notes=NOTES,
        quick=quick,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.end_to_end", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="repeatable; default: demo")
    parser.add_argument("--quick", action="store_true", help="the 3-minute smoke chain instead; records nothing")
    parser.add_argument(
        "--redraw", action="store_true", help="run nothing: the figure and the section again from the kept records"
    )
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--output", type=Path, help="the document (default: docs/PERFORMANCE.md; with --quick, none)")
    parser.add_argument("--section-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mura-demo-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.quick:  # the chain only: the smoke model through opened floors, nothing recorded
            smoke = Recipe("smoke chain", 8, {"gate.study_kappa_floor": -1, "gate.auc_floor": 0})
            latest = measure("smoke", smoke, workdir, ("DEMO_PROFILE=smoke",))
            ordered = [latest]
        else:
            records, latest = load_records(), {}
            for name in [] if args.redraw else args.recipe or ["demo"]:
                recipe = RECIPES[name]
                if name == "demo":
                    recipe = Recipe(recipe.what, make_default_studies(), recipe.settings)
                latest = records[name] = measure(name, recipe, workdir)
                print(json.dumps({k: v for k, v in latest.items() if k != "components"}), flush=True)
            if not records:
                raise SystemExit(f"no recipe measured yet in {RECORDS}: run one first (--recipe demo)")
            ordered = sorted(records.values(), key=lambda r: (r["recipe"] != "demo", r["wall_minutes"]))
            latest = latest or max(ordered, key=lambda r: r["measured"])
            RECORDS.write_text(json.dumps(ordered, indent=2) + "\n")
            draw(ordered, FIGURE)
    result = section(ordered, latest, quick=args.quick)
    result.seconds = time.perf_counter() - start
    if args.redraw:
        result.seconds, result.measured = 60 * latest["wall_minutes"], latest["measured"]
    print(result.text())
    if args.section_json:
        report.save_section(result, args.section_json)
    output = args.output or (None if args.quick else report.DOC)
    if output:
        report.write_section(result, output)


if __name__ == "__main__":
    sys.exit(main())
