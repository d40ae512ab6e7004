"""The one pipeline factory: every runner (local Beam, `tfx` CLI, Kubeflow) builds its pipeline here."""

from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode

from components.data_validation_gate import DataValidationGate
from components.mura_example_gen.component import MuraExampleGen
from mura.config import DataConfig, RunConfig

SCHEMA_FILE = str(Path(__file__).parent / "schema" / "schema.pbtxt")


def ingestion_components(data_root: str, data: DataConfig) -> list[BaseNode]:
    """MURA root → examples → statistics → curated schema → validation → a gate that stops on anomalies."""
    example_gen = MuraExampleGen(data_root=data_root, config=data)
    schema_importer = tfx.components.ImportSchemaGen(schema_file=SCHEMA_FILE)
    # With the schema, statistics treat `label` as categorical, which the drift comparator needs.
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_importer.outputs["schema"]
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_importer.outputs["schema"]
    )
    gate = DataValidationGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        drift_is_fatal=data.drift_is_fatal,
    )
    return [example_gen, schema_importer, statistics_gen, example_validator, gate]


def create_ingestion_pipeline(run: RunConfig, data: DataConfig) -> tfx.dsl.Pipeline:
    """Only ingestion and validation: for checking a new data drop."""
    return _pipeline(run, f"{run.pipeline_name}-ingest", ingestion_components(run.data_root, data))


def create_pipeline(run: RunConfig, data: DataConfig) -> tfx.dsl.Pipeline:
    return _pipeline(run, run.pipeline_name, ingestion_components(run.data_root, data))


def _pipeline(run: RunConfig, name: str, components: list[BaseNode]) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=run.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(run.metadata),
        beam_pipeline_args=list(run.beam_pipeline_args),
    )
