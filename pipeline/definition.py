"""The one pipeline factory: every runner (local Beam, `tfx` CLI, Kubeflow) builds its pipeline here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode
from tfx.types.standard_artifacts import Model, ModelBlessing

from components.data_validation_gate import DataValidationGate
from components.modules.transform import IMAGE_SIZE
from components.mura_example_gen.component import MuraExampleGen
from components.study_evaluator import StudyEvaluator
from components.versioned_pusher import VersionedPusher
from mura.config import DataConfig, Settings
from pipeline.eval_config import eval_config

SCHEMA_FILE = str(Path(__file__).parent / "schema" / "schema.pbtxt")


@dataclass(frozen=True)
class Ingestion:
    example_gen: MuraExampleGen
    schema_importer: BaseNode
    statistics_gen: BaseNode
    example_validator: BaseNode
    gate: BaseNode

    @property
    def components(self) -> list[BaseNode]:
        return [self.example_gen, self.schema_importer, self.statistics_gen, self.example_validator, self.gate]


def ingestion(data_root: str, data: DataConfig, schema_file: str = SCHEMA_FILE) -> Ingestion:
    """MURA root → examples → statistics → curated schema → validation → a gate that stops on anomalies."""
    example_gen = MuraExampleGen(data_root=data_root, config=data)
    schema_importer = tfx.components.ImportSchemaGen(schema_file=schema_file)
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
    return Ingestion(example_gen, schema_importer, statistics_gen, example_validator, gate)


def training_components(ingested: Ingestion, settings: Settings) -> list[BaseNode]:
    """Transform (decode, resize, count labels), Trainer (ResNet50V2) behind the validation gate, TFMA against
    the latest blessed model, MURA's study-level evaluation, and a push into TF Serving's folder layout of models
    both evaluations blessed."""
    train, gate = settings.train, settings.gate
    transform = tfx.components.Transform(
        examples=ingested.example_gen.outputs["examples"],
        schema=ingested.schema_importer.outputs["schema"],
        preprocessing_fn="components.modules.transform.preprocessing_fn",
        custom_config={IMAGE_SIZE: train.image_size},
    )
    transform.add_upstream_node(ingested.gate)
    trainer = tfx.components.Trainer(
        run_fn="components.modules.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=ingested.schema_importer.outputs["schema"],
        custom_config={"train": asdict(train)},
    )
    # The baseline is the newest model TFMA blessed; the first run has none and is judged by the floors alone.
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=Model),
        model_blessing=tfx.dsl.Channel(type=ModelBlessing, producer_component_id="Evaluator", output_key="blessing"),
    ).with_id("latest_blessed_model")
    evaluator = tfx.components.Evaluator(
        examples=ingested.example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(train, gate),
        example_splits=["test"],
    )
    study_evaluator = StudyEvaluator(
        model=trainer.outputs["model"],
        examples=ingested.example_gen.outputs["examples"],
        threshold=train.threshold,
        kappa_floor=gate.study_kappa_floor,
    )
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        study_blessing=study_evaluator.outputs["blessing"],
        serving_root=settings.run.serving,
        model_name=settings.serving.model_name,
    )
    return [transform, trainer, baseline, evaluator, study_evaluator, pusher]


def create_ingestion_pipeline(settings: Settings) -> tfx.dsl.Pipeline:
    """Only ingestion and validation, for a new data drop; same name as the full pipeline, so they share a cache."""
    return _pipeline(settings, ingestion(settings.run.data_root, settings.data).components)


def create_pipeline(
    settings: Settings, local_metadata: bool = True, schema_file: str = SCHEMA_FILE
) -> tfx.dsl.Pipeline:
    """On Kubeflow: `local_metadata=False` (it brings its own ML Metadata) and the schema's path in the image."""
    ingested = ingestion(settings.run.data_root, settings.data, schema_file)
    return _pipeline(settings, ingested.components + training_components(ingested, settings), local_metadata)


def _pipeline(settings: Settings, components: list[BaseNode], local_metadata: bool = True) -> tfx.dsl.Pipeline:
    run = settings.run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(run.metadata) if local_metadata else None
    return tfx.dsl.Pipeline(
        pipeline_name=run.pipeline_name,
        pipeline_root=run.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata,
        beam_pipeline_args=list(run.beam_args),
    )
