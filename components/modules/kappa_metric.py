"""Cohen's kappa as a TFMA metric (TFMA has none), so the Evaluator reports it per slice beside AUC.

It is computed from TFMA's binary confusion matrix at the model's threshold, with the same formula as MURA's
study-level kappa, here over images.
"""

from __future__ import annotations

from tensorflow_model_analysis.metrics import confusion_matrix_metrics, metric_types

from mura.study_metrics import kappa_from_counts

NAME = "cohen_kappa"


class CohenKappa(confusion_matrix_metrics.ConfusionMatrixMetric):
    """Image-level Cohen's kappa at the given thresholds (default 0.5)."""

    def __init__(self, thresholds: float | list[float] | None = None, name: str | None = None) -> None:
        super().__init__(thresholds=thresholds, name=name)

    def _default_name(self) -> str:
        return NAME

    def result(self, tp: float, tn: float, fp: float, fn: float) -> float:
        if tp + tn + fp + fn <= 0:
            return float("nan")
        return kappa_from_counts(tp, tn, fp, fn)


metric_types.register_metric(CohenKappa)
