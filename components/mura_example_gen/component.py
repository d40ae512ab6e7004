"""MURA ExampleGen: a MURA-v1.1 root in, gzipped TFRecords of tf.Example split by patient out, nothing lost.

A FileBasedExampleGen with its own executor (Beam, so it runs on the DirectRunner here and on Dataflow, Flink or
Spark through `beam_pipeline_args`), a second output with every rejected row, and a driver whose fingerprint
covers both the CSVs and the images, so TFX's cache re-ingests when either changes.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.driver import FileBasedDriver
from tfx.dsl.components.base import executor_spec
from tfx.dsl.placeholder.placeholder import Placeholder
from tfx.orchestration.data_types import RuntimeParameter
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.artifacts import RejectedImages
from components.mura_example_gen import executor
from components.mura_example_gen.fingerprint import data_fingerprint
from mura.config import DataConfig
from mura.splits import PIPELINE_SPLITS

DATA_FINGERPRINT_KEY = "data_fingerprint"
_DATA = DataConfig()


class MuraExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.EVAL_FRACTION_KEY: ExecutionParameter(type=float),
        executor.SPLIT_SALT_KEY: ExecutionParameter(type=str),
        executor.MAX_REJECTED_FRACTION_KEY: ExecutionParameter(type=float),
        # Only where no driver runs (open-source Kubeflow): the data drop's fingerprint, so a changed drop changes
        # the step's parameters and KFP's cache key. The executor does not read it.
        DATA_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.REJECTED_KEY: ChannelParameter(type=RejectedImages),
    }


class MuraDriver(FileBasedDriver):
    """Fingerprints the four CSVs and every image file (names, sizes, mtimes), not just one glob."""

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = data_fingerprint(input_base)
        return exec_properties


class MuraExampleGen(FileBasedExampleGen):
    """Outputs `examples` (splits train/eval/test) and `rejected` (a CSV of every row not ingested).

    Execution properties record image_rows, accepted_images, rejected_images and {split}_images. The run fails,
    naming the counts, the bound and the report, when more than `max_rejected_fraction` of image rows are rejected
    or a split is empty.
    """

    SPEC_CLASS = MuraExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = MuraDriver

    def __init__(
        self,
        data_root: str | RuntimeParameter,
        eval_fraction: float | RuntimeParameter = _DATA.eval_fraction,
        split_salt: str | RuntimeParameter = _DATA.split_salt,
        max_rejected_fraction: float | RuntimeParameter = _DATA.max_rejected_fraction,
        data_fingerprint: str | Placeholder | None = None,
    ) -> None:
        # The input split only feeds FileBasedDriver's bookkeeping; the reader decides the real splits.
        input_config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="mura", pattern="*.csv")])
        output_config = example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1) for name in PIPELINE_SPLITS]
            )
        )
        spec = MuraExampleGenSpec(
            input_base=data_root,
            input_config=input_config,
            output_config=output_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            eval_fraction=eval_fraction,
            split_salt=split_salt,
            max_rejected_fraction=max_rejected_fraction,
            data_fingerprint=data_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples),
            rejected=types.Channel(type=RejectedImages),
        )
        super(FileBasedExampleGen, self).__init__(spec=spec)
