"""The per-body-part analysis of a run: what the notebook shows and `mura report` writes as a static page.

Everything is read back from the run's artifacts (found through ML Metadata): TFMA's slices and plots, the study
evaluation, the test images, and the model that was pushed (or, when it was refused, the candidate).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from tfx.utils import io_utils

from analysis.curves import SliceCurves
from analysis.figures import (
    Case,
    calibration_figure,
    cases_figure,
    confusion_figure,
    reliability_figure,
    roc_figure,
    study_metrics_chart,
)
from analysis.gradcam import heatmaps, load_model
from analysis.pages import PAGES
from analysis.run_outputs import RunOutputs
from analysis.tfma_results import IMAGE_COLUMNS, image_table, slice_curves
from components.modules.export import read_model_facts
from components.study_evaluator import read_image_predictions, read_study_report
from components.tfma_gate import failures
from mura import features
from mura.calibration import CalibrationBin
from mura.image_ops import decode_batch_to_square
from mura.misreads import misread
from mura.model_card import (
    CALIBRATION_COLUMNS,
    CARD_HTML,
    OPERATING_POINT_COLUMNS,
    calibration_rows,
    calibration_summary,
    operating_point_rows,
)
from mura.study_gate import GateDecision
from mura.study_metrics import STUDY_COLUMNS, ImagePrediction
from mura.tables import html_table

THUMBNAIL_SIDE = 256


@dataclass(frozen=True)
class Analysis:
    study: dict  # the StudyEvaluator's report: rows per body part and overall, thresholds, calibration, blessing
    image_rows: list[dict[str, object]]  # TFMA's image-level table
    curves: list[SliceCurves]
    tfma_failures: list[str]
    images: list[ImagePrediction]
    pushed_to: str
    model_dir: str  # the model Grad-CAM explains: the pushed one, else the candidate
    examples_dir: str  # the evaluated split's raw examples (the examples artifact's Split-test folder)
    facts: dict = field(default_factory=dict)  # the model's calibration and operating points (MODEL_FACTS_FILE)
    run: str = ""  # the pipeline run everything above comes from
    card_dir: str = ""  # the folder of the model's card: the pushed version's, else the candidate's; empty: none

    @property
    def threshold(self) -> float:
        """The global operating point: for images whose body part the model is not told."""
        return self.facts["operating_points"]["thresholds"]["global"]

    @property
    def study_gate(self) -> GateDecision:
        return GateDecision.from_report(self.study)

    def verdict(self) -> list[str]:
        """Why the model was, or was not, pushed: one line per reason."""
        gate = self.study_gate
        lines = [f"TFMA: {failure}" for failure in self.tfma_failures]
        if not gate.blessed:
            lines.append(f"study level: {gate.reason()}")
        if self.pushed_to:
            return [f"Pushed to {self.pushed_to}: TFMA blessed it and {gate.reason()}."]
        return ["Not pushed.", *lines] if lines else ["Not pushed (the latest push was refused or skipped)."]


def analyse(outputs: RunOutputs) -> Analysis:
    outputs.require("examples", "model", "evaluation", "study_evaluation")
    study = read_study_report(outputs.study_evaluation)
    model_dir = outputs.pushed_to or outputs.serving_model
    facts = read_model_facts(model_dir)
    return Analysis(
        study=study,
        image_rows=image_table(outputs.evaluation),
        curves=slice_curves(outputs.evaluation, facts["operating_points"]["thresholds"]["global"]),
        tfma_failures=failures(outputs.evaluation),
        images=read_image_predictions(outputs.study_evaluation),
        pushed_to=outputs.pushed_to,
        model_dir=model_dir,
        examples_dir=outputs.split_uri("examples", study.get("split", "test")),
        facts=facts,
        run=outputs.run,
        card_dir=outputs.card_dir,
    )


def _encoded_images(examples_dir: str, wanted: set[str]) -> dict[str, bytes]:
    files = tf.io.gfile.glob(io_utils.all_files_pattern(examples_dir))
    spec = {
        features.IMAGE: tf.io.FixedLenFeature([], tf.string),
        features.SOURCE_PATH: tf.io.FixedLenFeature([], tf.string),
    }
    found = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        path = example[features.SOURCE_PATH].numpy().decode()
        if path in wanted:
            found[path] = example[features.IMAGE].numpy()
    return found


def _case_title(image: ImagePrediction) -> str:
    where = "/".join(image.source_path.split("/")[-3:])  # patient, study, image
    return f"{where}\nlabel {'abnormal' if image.label else 'normal'}, p = {image.probability:.3f}"


def _thumbnail(encoded: bytes) -> np.ndarray:
    image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    scale = THUMBNAIL_SIDE / max(image.shape[0], image.shape[1])
    if scale < 1:
        image = tf.image.resize(image, [round(image.shape[0] * scale), round(image.shape[1] * scale)], antialias=True)
    return image.numpy()[..., 0]


def misread_cases(analysis: Analysis, per_kind: int = 2) -> dict[tuple[str, str], list[Case]]:
    """The worst misreads with their Grad-CAM heatmaps, computed from the model in one batch."""
    worst = misread(analysis.images, per_kind)
    chosen = [image for group in worst.values() for image in group]
    if not chosen:
        return {key: [] for key in worst}
    encoded = _encoded_images(analysis.examples_dir, {i.source_path for i in chosen})
    model = load_model(analysis.model_dir)
    size = model.input_shape[1]
    pixels = decode_batch_to_square(tf.constant([encoded[i.source_path] for i in chosen]), size).numpy()
    cams = heatmaps(model, pixels)
    maps = {image.source_path: (pixels[n, ..., 0], cams[n]) for n, image in enumerate(chosen)}
    return {
        key: [
            Case(
                title=_case_title(i),
                image=_thumbnail(encoded[i.source_path]),
                model_input=maps[i.source_path][0],
                heatmap=maps[i.source_path][1],
            )
            for i in images
        ]
        for key, images in worst.items()
    }


def draw_figures(analysis: Analysis, cases_per_kind: int = 2) -> dict[str, Figure]:
    """Every figure of the report by file stem, in reading order."""
    drawn = {
        "study_metrics": study_metrics_chart(analysis.study["rows"]),
        "roc": roc_figure(analysis.curves),
        "reliability": reliability_figure(analysis.curves),
        "confusion": confusion_figure(analysis.curves, analysis.threshold),
        "calibration": calibration_figure(
            {split: (_bins(measured["before"]), _bins(measured["after"])) for split, measured in _splits(analysis)}
        ),
    }
    for (part, kind), cases in misread_cases(analysis, cases_per_kind).items():
        drawn[f"misread_{part}_{kind.replace(' ', '_')}"] = cases_figure(cases, f"{part}: worst {kind}")
    return drawn


def _splits(analysis: Analysis) -> list[tuple[str, dict]]:
    """(split, its calibration before and after): eval (where it was fitted), test (where it is judged)."""
    return [("eval", analysis.facts["calibration"]), ("test", analysis.study["calibration"])]


def _bins(measured: dict) -> list[CalibrationBin]:
    return [CalibrationBin(**b) for b in measured["bins"]]


def render_html(analysis: Analysis, figure_files: dict[str, str]) -> str:
    """The page (templates/report.html.j2): every value is escaped but the tables, which tabulate escaped."""
    return PAGES.get_template("report.html.j2").render(
        verdict=analysis.verdict(),
        threshold=analysis.threshold,
        run=analysis.run,
        model_dir=analysis.model_dir,
        study_table=html_table(analysis.study["rows"], STUDY_COLUMNS),
        study_gate=analysis.study_gate,
        bootstrap_samples=analysis.study.get("bootstrap_samples", 0),  # none before intervals were reported
        image_table=html_table(analysis.image_rows, IMAGE_COLUMNS),
        calibration=calibration_summary(analysis.facts),
        calibration_table=html_table(calibration_rows(analysis.facts, analysis.study), CALIBRATION_COLUMNS),
        operating_point_rule=analysis.facts["operating_points"]["rule"],
        operating_point_table=html_table(operating_point_rows(analysis.facts), OPERATING_POINT_COLUMNS),
        figures=figure_files,
        cases=[stem for stem in figure_files if stem.startswith("misread_")],
        card=CARD_HTML if analysis.card_dir else "",
    )


def write_report(outputs: RunOutputs, out_dir: Path, cases_per_kind: int = 2) -> Path:
    """`out_dir`/index.html with its figures as PNG files beside it; returns the page's path."""
    analysis = analyse(outputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for stem, figure in draw_figures(analysis, cases_per_kind).items():
        files[stem] = f"{stem}.png"
        figure.savefig(out_dir / files[stem], dpi=100)
    if analysis.card_dir:  # a copy beside the page: the link works wherever the report folder goes
        tf.io.gfile.copy(os.path.join(analysis.card_dir, CARD_HTML), str(out_dir / CARD_HTML), overwrite=True)
    page = out_dir / "index.html"
    page.write_text(render_html(analysis, files))
    return page
