"""TFMA's half of the promotion gate, read back from the Evaluator's output: the thresholds it held the model to
and, when it said no, which of them failed, in words a user can act on."""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

from mura import features

OVERALL = "overall"


def slice_name(slice_key: tuple) -> str:
    return dict(slice_key).get(features.BODY_PART, OVERALL) if slice_key else OVERALL


def _spec_name(spec: tfma.SlicingSpec) -> str:
    return f"each {', '.join(spec.feature_keys)}" if spec.feature_keys else OVERALL


def thresholds(evaluation_uri: str) -> list[str]:
    """One line per threshold of the eval config TFMA applied: "overall: AUC at least 0.700"."""
    config, *_ = load_eval_run(evaluation_uri)
    lines = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                threshold = per_slice.threshold
                for group in map(_spec_name, per_slice.slicing_specs):
                    if threshold.HasField("value_threshold"):
                        floor = threshold.value_threshold.lower_bound.value
                        lines.append(f"{group}: {metric.class_name} at least {floor:.3f}")
                    if threshold.HasField("change_threshold"):
                        change = threshold.change_threshold.absolute.value
                        lines.append(f"{group}: {metric.class_name} change against the baseline at least {change:+.3f}")
    return lines


def failures(evaluation_uri: str) -> list[str]:
    """Empty when TFMA blessed the model; otherwise one line per failed threshold and slice."""
    result = tfma.load_validation_result(evaluation_uri)
    lines = []
    for per_slice in result.metric_validations_per_slice:
        group = slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            key, threshold = failure.metric_key, failure.metric_threshold
            value = failure.metric_value.double_value.value
            if key.is_diff:
                needed = f"the required change {threshold.change_threshold.absolute.value:+.3f}"
                lines.append(f"{group}: {key.name} change against the baseline {value:+.3f} is below {needed}")
            else:
                needed = f"the floor {threshold.value_threshold.lower_bound.value:.3f}"
                lines.append(f"{group}: {key.name} {value:.3f} is below {needed}")
    return lines
