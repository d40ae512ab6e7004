"""Where a run's artifacts are, found through ML Metadata: what reports and notebooks read, without paths typed in."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import ml_metadata as mlmd
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx.types import Artifact, artifact_utils
from tfx.utils import path_utils

from analysis.metadata import open_store, output_artifacts, pipeline_runs, run_executions
from components.artifacts import DataValidationReport, ModelCard, RejectedImages, StudyEvaluation
from mura.model_card import CARD_DIR, CARD_HTML

# field -> (component, output artifact type): every field is read from the same pipeline run.
_SOURCES = {
    "examples": ("MuraExampleGen", "Examples"),
    "rejected": ("MuraExampleGen", RejectedImages.TYPE_NAME),
    "statistics": ("StatisticsGen", "ExampleStatistics"),
    "schema": ("ImportSchemaGen", "Schema"),
    "anomalies": ("ExampleValidator", "ExampleAnomalies"),
    "data_report": ("DataValidationGate", DataValidationReport.TYPE_NAME),
    "model": ("Trainer", "Model"),
    "evaluation": ("Evaluator", "ModelEvaluation"),
    "study_evaluation": ("StudyEvaluator", StudyEvaluation.TYPE_NAME),
    "model_card": ("ModelCardWriter", ModelCard.TYPE_NAME),
    "pushed_model": ("VersionedPusher", "PushedModel"),
}


@dataclass(frozen=True)
class RunOutputs:
    """Artifact folders of one pipeline run (outputs TFX reused from its cache included); None for a component that
    did not complete in that run."""

    metadata_path: str
    examples: str | None = None  # raw examples, with the encoded images
    rejected: str | None = None  # MuraExampleGen's rejected.csv
    statistics: str | None = None
    schema: str | None = None
    anomalies: str | None = None
    data_report: str | None = None
    model: str | None = None
    evaluation: str | None = None  # TFMA's output
    study_evaluation: str | None = None
    model_card: str | None = None  # the candidate's card
    pushed_model: str | None = None
    pushed_to: str = ""  # the pushed version's folder; empty when the run's push was refused
    run: str = ""  # the pipeline run's id (its `pipeline_run` context); empty when the store has no run
    artifacts: Mapping[str, Artifact] = field(default_factory=dict, repr=False, compare=False)  # field -> artifact

    def require(self, *names: str) -> RunOutputs:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            components = ", ".join(sorted({_SOURCES[name][0] for name in missing}))
            raise LookupError(
                f"the pipeline in {self.metadata_path} has no run with a completed {components} yet: "
                "run it to the end first (mura pipeline run, or tfx run create)"
            )
        return self

    @property
    def serving_model(self) -> str | None:
        """The candidate's SavedModel, as pushed (what serving answers with)."""
        return self.model and path_utils.serving_model_path(self.model)

    @property
    def card_dir(self) -> str:
        """The folder of the model's card: the pushed version's, else the candidate's (a refused model has one too);
        empty for a run from before model cards."""
        pushed = os.path.join(self.pushed_to, CARD_DIR)
        if self.pushed_to and tf.io.gfile.exists(os.path.join(pushed, CARD_HTML)):
            return pushed
        return self.model_card or ""

    def splits(self, name: str) -> list[str]:
        """The splits of a split artifact (`examples`, `statistics`, `anomalies`), as its producer recorded them."""
        return artifact_utils.decode_split_names(self.artifacts[name].split_names)

    def split_uri(self, name: str, split: str) -> str:
        """One split's folder of a split artifact (`Split-test` of `examples`)."""
        return artifact_utils.get_split_uri([self.artifacts[name]], split)


def find_run_outputs(metadata_path: str, run: str | None = None, needs: Iterable[str] = tuple(_SOURCES)) -> RunOutputs:
    """The artifacts of one pipeline run: `run` (a run id) if given, else the newest run in which the components
    behind `needs` (field names; by default all) all completed or came from the cache. When no run has them all,
    the newest run, whose `require` then names what is missing."""
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata store at {metadata_path}: is this a pipeline root that has run?")
    store = open_store(metadata_path)
    runs = pipeline_runs(store)
    if run is not None:
        runs = [context for context in runs if context.name == run]
        if not runs:
            raise LookupError(f"no pipeline run {run!r} in {metadata_path}")
    found = _newest_run_with(store, runs, {_SOURCES[name][0] for name in needs})
    if found is None:
        return RunOutputs(metadata_path=metadata_path)
    context, executions = found
    outputs = output_artifacts(store, [executions[c] for c in {c for c, _ in _SOURCES.values()} if c in executions])
    artifacts = {
        name: outputs[executions[component].id][type_name]
        for name, (component, type_name) in _SOURCES.items()
        if component in executions and type_name in outputs[executions[component].id]
    }
    pushed = artifacts.get("pushed_model")
    return RunOutputs(
        metadata_path=metadata_path,
        pushed_to=pushed.get_string_custom_property("pushed_destination") if pushed else "",
        run=context.name,
        artifacts=artifacts,
        **{name: artifact.uri for name, artifact in artifacts.items()},
    )


def _newest_run_with(
    store: mlmd.MetadataStore, runs: list[metadata_store_pb2.Context], components: set[str]
) -> tuple[metadata_store_pb2.Context, dict[str, metadata_store_pb2.Execution]] | None:
    """The first of `runs` (newest first) in which every component succeeded, else the first; None without runs."""
    newest = None
    for context in runs:
        executions = run_executions(store, context)
        if components <= executions.keys():
            return context, executions
        newest = newest or (context, executions)
    return newest
