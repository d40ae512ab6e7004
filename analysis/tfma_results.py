"""Reading the Evaluator's output back: the image-level table per slice and, when it said no, which threshold
failed, in words a user can act on."""

from __future__ import annotations

import math

import tensorflow_model_analysis as tfma

from analysis.curves import Counts, SliceCurves, roc_points
from components.modules.kappa_metric import NAME as KAPPA
from components.tfma_gate import OVERALL, slice_name
from mura.calibration import rebin_calibration

# image_table's columns, (title, key), as the CLI and the report show them.
IMAGE_COLUMNS = (
    ("", "group"),
    ("images", "examples"),
    ("AUC", "auc"),
    ("kappa at train.threshold", "kappa"),  # TFMA's config is written before the operating points are chosen
    ("AUC vs baseline", "auc_change"),
)


def _number(metrics: dict, name: str) -> float | None:
    value = metrics.get(name, {}).get("doubleValue")
    return None if value is None or math.isnan(value) else value


def load_candidate(evaluation_uri: str) -> tfma.EvalResult:
    """TFMA's result for the candidate model (with a baseline, TFMA stores both and plots need the name)."""
    result = tfma.load_eval_result(evaluation_uri)
    specs = result.config.model_specs
    if len(specs) < 2:
        return result
    return tfma.load_eval_result(evaluation_uri, model_name=next(s.name for s in specs if not s.is_baseline))


def _sorted_groups(rows: list, group) -> list:
    return sorted(rows, key=lambda row: (group(row) == OVERALL, group(row)))


def image_table(evaluation_uri: str) -> list[dict[str, object]]:
    """One row per body part, then overall: examples, AUC, kappa at the threshold, and AUC's change against the
    baseline when there was one."""
    result = load_candidate(evaluation_uri)
    rows = []
    for slice_key, by_output in result.slicing_metrics:
        metrics = by_output[""][""]
        rows.append(
            {
                "group": slice_name(slice_key),
                "examples": int(_number(metrics, "example_count") or 0),
                "auc": _number(metrics, "auc"),
                "kappa": next((_number(metrics, n) for n in metrics if n.startswith(KAPPA)), None),
                "auc_change": _number(metrics, "auc_diff"),
            }
        )
    return _sorted_groups(rows, lambda row: row["group"])


def _counts(matrix: dict) -> Counts:
    return Counts(
        tp=matrix.get("truePositives", 0.0),
        fp=matrix.get("falsePositives", 0.0),
        tn=matrix.get("trueNegatives", 0.0),
        fn=matrix.get("falseNegatives", 0.0),
    )


def slice_curves(evaluation_uri: str, threshold: float, bins: int = 10) -> list[SliceCurves]:
    """ROC, calibration and the confusion matrix at `threshold` (the nearest of the plot's 1,000) per body part,
    then overall, from TFMA's plots: the model's thresholds are chosen after training, when TFMA's config is
    long written."""
    result = load_candidate(evaluation_uri)
    curves = []
    for slice_key, by_output in result.plots:
        group = slice_name(slice_key)
        plots = by_output[""][""]
        matrices = plots["confusionMatrixAtThresholds"]["matrices"]
        fpr, tpr = roc_points(_counts(m) for m in matrices)
        buckets = [
            (
                float(b.get("lowerThresholdInclusive", "-inf")),
                b.get("numWeightedExamples", 0.0),
                b.get("totalWeightedLabel", 0.0),
                b.get("totalWeightedRefinedPrediction", 0.0),
            )
            for b in plots["calibrationHistogramBuckets"]["buckets"]
        ]
        at = min(matrices, key=lambda m: abs(m.get("threshold", 0.0) - threshold))
        calibration = rebin_calibration(buckets, bins)
        curves.append(SliceCurves(group, fpr, tpr, calibration, _counts(at), at.get("threshold", 0.0)))
    return _sorted_groups(curves, lambda c: c.group)
