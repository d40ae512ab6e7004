"""The one pipeline factory: every runner (local Beam, `tfx` CLI, Kubeflow) builds its pipeline here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.base.base_node import BaseNode

from components import served_baseline
from components.data_validation_gate import DataValidationGate
from components.model_card import ModelCardWriter
from components.modules.transform import IMAGE_SIZE
from components.mura_example_gen.component import MuraExampleGen
from components.mura_example_gen.fingerprint import DataFingerprint
from components.study_evaluator import StudyEvaluator
from components.versioned_pusher import VersionedPusher
from mura.config import Settings
from mura.model_versions import versions
from pipeline.parameters import PipelineValues

SCHEMA_FILE = str(Path(__file__).parent / "schema" / "schema.pbtxt")
# Steps whose answer depends on the world outside the pipeline's inputs: a runner must never take them from a cache.
UNCACHED = ("DataFingerprint", "ServedBaseline")


@dataclass(frozen=True)
class Ingestion:
    example_gen: MuraExampleGen
    schema_importer: BaseNode
    statistics_gen: BaseNode
    example_validator: BaseNode
    gate: BaseNode
    fingerprint: BaseNode | None = None

    @property
    def components(self) -> list[BaseNode]:
        found = [self.example_gen, self.schema_importer, self.statistics_gen, self.example_validator, self.gate]
        return [self.fingerprint, *found] if self.fingerprint else found


def ingestion(values: PipelineValues, schema_file: str = SCHEMA_FILE) -> Ingestion:
    """MURA root → examples → statistics → curated schema → validation → a gate that stops on anomalies.

    On Kubeflow, a `DataFingerprint` step comes first: open-source KFP runs no ExampleGen driver, and keys its cache
    on a step's parameters, so the data drop's fingerprint becomes one. Locally MuraExampleGen's driver does this.
    """
    fingerprint = DataFingerprint(data_root=values["data_root"]) if values.runtime else None
    example_gen = MuraExampleGen(
        data_root=values["data_root"],
        eval_fraction=values["eval_fraction"],
        split_salt=values["split_salt"],
        max_rejected_fraction=values["max_rejected_fraction"],
        data_fingerprint=fingerprint.outputs["fingerprint"].future()[0].value if fingerprint else None,
    )
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
        drift_is_fatal=values.settings.data.drift_is_fatal,
    )
    return Ingestion(example_gen, schema_importer, statistics_gen, example_validator, gate, fingerprint)


def training_components(ingested: Ingestion, values: PipelineValues) -> list[BaseNode]:
    """Transform (decode, resize, count labels), Trainer (ResNet50V2) behind the validation gate, TFMA against
    the model being served, MURA's study-level evaluation, the candidate's model card, and a push into TF
    Serving's folder layout, card included, of models both evaluations blessed."""
    settings = values.settings
    transform = tfx.components.Transform(
        examples=ingested.example_gen.outputs["examples"],
        schema=ingested.schema_importer.outputs["schema"],
        preprocessing_fn="components.modules.transform.preprocessing_fn",
        custom_config={IMAGE_SIZE: settings.train.image_size},
    )
    transform.add_upstream_node(ingested.gate)
    trainer = tfx.components.Trainer(
        run_fn="components.modules.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=ingested.schema_importer.outputs["schema"],
        custom_config=values["train"],
    )
    baseline = served_baseline.ServedBaseline(
        serving_root=values["serving_root"],
        model_name=settings.serving.model_name,
        # The versions served when the pipeline was built: locally, TFX's cache then answers again after a push.
        served=",".join(map(str, versions(f"{settings.run.serving}/{settings.serving.model_name}"))),
    )
    evaluator = tfx.components.Evaluator(
        examples=ingested.example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline"],
        eval_config=values["tfma_eval_config"],
        example_splits=["test"],
    )
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(served_baseline.Executor)
    study_evaluator = StudyEvaluator(
        model=trainer.outputs["model"],
        examples=ingested.example_gen.outputs["examples"],
        kappa_floor=values["kappa_floor"],
        bootstrap_samples=values["bootstrap_samples"],
        bootstrap_seed=values["bootstrap_seed"],
        gate_on_lower_bound=values["gate_on_lower_bound"],
    )
    card = ModelCardWriter(
        model=trainer.outputs["model"],
        examples=ingested.example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        evaluation=evaluator.outputs["evaluation"],
        model_blessing=evaluator.outputs["blessing"],
        study_evaluation=study_evaluator.outputs["evaluation"],
        baseline=baseline.outputs["baseline"],
        model_name=settings.serving.model_name,
        data_root=values["data_root"],
    )
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        study_blessing=study_evaluator.outputs["blessing"],
        model_card=card.outputs["model_card"],
        serving_root=values["serving_root"],
        model_name=settings.serving.model_name,
    )
    return [transform, trainer, baseline, evaluator, study_evaluator, card, pusher]


def create_ingestion_pipeline(settings: Settings) -> tfx.dsl.Pipeline:
    """Only ingestion and validation, for a new data drop; same name as the full pipeline, so they share a cache."""
    return _pipeline(settings, ingestion(PipelineValues(settings)).components)


def create_pipeline(settings: Settings, kubeflow: bool = False, schema_file: str = SCHEMA_FILE) -> tfx.dsl.Pipeline:
    """For Kubeflow (`kubeflow=True`): run parameters instead of constants, no local ML Metadata (KFP brings its
    own), and the schema's path in the image."""
    values = PipelineValues(settings, runtime=kubeflow)
    ingested = ingestion(values, schema_file)
    return _pipeline(settings, ingested.components + training_components(ingested, values), not kubeflow)


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
