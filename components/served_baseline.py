"""The model in production as TFMA's baseline: the newest version under the serving root, on every runner.

TFX's `Resolver` (latest blessed model) compiles to an executor that only Vertex AI implements; open-source
Kubeflow Pipelines cannot start a pipeline holding one. This component is an ordinary step instead, and its
answer is what the gate should mean anyway: no worse than the model being served, not than the last model TFMA
liked (which the study-level gate may have refused).
"""

import os

from absl import logging
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.standard_artifacts import Model
from tfx.utils import io_utils, path_utils

from mura.model_versions import versions

SERVED_VERSION = "served_version"  # 0: nothing is served yet, and the candidate is judged by the floors alone


@component
def ServedBaseline(
    baseline: OutputArtifact[Model],
    serving_root: Parameter[str],
    model_name: Parameter[str],
    served: Parameter[str] = "",
) -> None:
    """Copies the newest served version into `baseline` as a Model (TFMA reads it from there on every runner).

    `served` only keys TFX's local cache (the versions present when the pipeline was built); Kubeflow runs this
    step uncached.
    """
    model_dir = os.path.join(serving_root, model_name)
    served = versions(model_dir)
    baseline.set_int_custom_property(SERVED_VERSION, served[-1] if served else 0)
    if not served:
        logging.info("Nothing served under %s yet: no baseline.", model_dir)
        return
    io_utils.copy_dir(os.path.join(model_dir, str(served[-1])), path_utils.serving_model_dir(baseline.uri))
    logging.info("Baseline: version %d of %s", served[-1], model_dir)


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator, told that an empty baseline is no baseline (TFMA then ignores the change thresholds)."""

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict) -> None:
        baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)
        if baselines and not artifact_utils.get_single_instance(baselines).get_int_custom_property(SERVED_VERSION):
            input_dict = {k: v for k, v in input_dict.items() if k != standard_component_specs.BASELINE_MODEL_KEY}
        super().Do(input_dict, output_dict, exec_properties)
