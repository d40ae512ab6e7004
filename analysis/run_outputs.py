"""Where a run's artifacts are, found through ML Metadata: what reports and notebooks read, without paths typed in."""

from __future__ import annotations

import os
from dataclasses import dataclass

from analysis.metadata import latest_execution, open_store, outputs_of, property_value
from components.artifacts import DataValidationReport, StudyEvaluation

# field -> (component, output artifact type): the latest completed execution of each component is read.
_SOURCES = {
    "examples": ("MuraExampleGen", "Examples"),
    "statistics": ("StatisticsGen", "ExampleStatistics"),
    "schema": ("ImportSchemaGen", "Schema"),
    "anomalies": ("ExampleValidator", "ExampleAnomalies"),
    "data_report": ("DataValidationGate", DataValidationReport.TYPE_NAME),
    "model": ("Trainer", "Model"),
    "evaluation": ("Evaluator", "ModelEvaluation"),
    "study_evaluation": ("StudyEvaluator", StudyEvaluation.TYPE_NAME),
    "pushed_model": ("VersionedPusher", "PushedModel"),
}


@dataclass(frozen=True)
class RunOutputs:
    """Artifact folders of a pipeline's latest completed executions; None for a component that never completed."""

    metadata_path: str
    examples: str | None = None  # raw examples, with the encoded images
    statistics: str | None = None
    schema: str | None = None
    anomalies: str | None = None
    data_report: str | None = None
    model: str | None = None
    evaluation: str | None = None  # TFMA's output
    study_evaluation: str | None = None
    pushed_model: str | None = None
    pushed_to: str = ""  # the pushed version's folder; empty when the latest push was refused

    def require(self, *names: str) -> RunOutputs:
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            components = ", ".join(sorted({_SOURCES[name][0] for name in missing}))
            raise LookupError(
                f"the pipeline in {self.metadata_path} has no completed {components} yet: "
                "run it to the end first (mura pipeline run, or tfx run create)"
            )
        return self

    @property
    def serving_model(self) -> str | None:
        """The candidate's SavedModel, as pushed (what serving answers with)."""
        return self.model and os.path.join(self.model, "Format-Serving")


def find_run_outputs(metadata_path: str) -> RunOutputs:
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata store at {metadata_path}: is this a pipeline root that has run?")
    store = open_store(metadata_path)
    found: dict[str, str] = {}
    pushed_to = ""
    for component in sorted({component for component, _ in _SOURCES.values()}):
        execution = latest_execution(store, component)
        if execution is None:
            continue
        outputs = outputs_of(store, execution)
        for name, (source, type_name) in _SOURCES.items():
            if source == component and type_name in outputs:
                found[name] = outputs[type_name].uri
        if "PushedModel" in outputs:
            pushed = outputs["PushedModel"].custom_properties
            pushed_to = str(property_value(pushed, "pushed_destination") or "")
    return RunOutputs(metadata_path=metadata_path, pushed_to=pushed_to, **found)
