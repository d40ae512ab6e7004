"""What TFMA measures on a candidate and what it must reach: the Evaluator's half of the promotion gate.

Sliced overall and by body part, on the raw `test` examples scored through the model's `serving_examples`
signature. Floors judge the first model; later ones must also hold up against the model being served.
"""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from components.modules import kappa_metric
from mura import features
from mura.config import GateConfig, TrainConfig
from mura.signatures import PROBABILITY, SERVING_EXAMPLES

OVERALL = tfma.SlicingSpec()
BY_BODY_PART = tfma.SlicingSpec(feature_keys=[features.BODY_PART])
CONFUSION_THRESHOLDS = (0.25, 0.5, 0.75)


def _at(thresholds: list[float]) -> str:
    return json.dumps({"thresholds": thresholds})


def _auc_threshold(gate: GateConfig) -> tfma.MetricConfig:
    floors = [
        tfma.PerSliceMetricThreshold(
            slicing_specs=[OVERALL],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.auc_floor}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": gate.auc_min_change}
                ),
            ),
        )
    ]
    if gate.body_part_auc_floor is not None:
        floors.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=[BY_BODY_PART],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.body_part_auc_floor})
                ),
            )
        )
    return tfma.MetricConfig(class_name="AUC", per_slice_thresholds=floors)


def eval_config(train: TrainConfig, gate: GateConfig) -> tfma.EvalConfig:
    at_model_threshold = _at([train.threshold])
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        _auc_threshold(gate),
        tfma.MetricConfig(class_name="AUCPrecisionRecall"),
        tfma.MetricConfig(class_name="BinaryAccuracy", config=json.dumps({"threshold": train.threshold})),
        tfma.MetricConfig(class_name="Precision", config=at_model_threshold),
        tfma.MetricConfig(class_name="Recall", config=at_model_threshold),
        tfma.MetricConfig(
            class_name=kappa_metric.CohenKappa.__name__, module=kappa_metric.__name__, config=at_model_threshold
        ),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        tfma.MetricConfig(
            class_name="ConfusionMatrixAtThresholds", config=_at(sorted({*CONFUSION_THRESHOLDS, train.threshold}))
        ),
    ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=SERVING_EXAMPLES,
                model_type=tfma.TF_GENERIC,  # a plain SavedModel load: the Keras one rebuilds ResNet50V2 per worker
                label_key=features.LABEL,
                prediction_key=PROBABILITY,
                preprocessing_function_names=[],
            )
        ],
        slicing_specs=[OVERALL, BY_BODY_PART],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )
