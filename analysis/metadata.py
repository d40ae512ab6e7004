"""Reading a local run's results back from ML Metadata, so commands can say what happened.

ML Metadata filters and orders on its side (`ListOptions`); TFX records each run as a `pipeline_run` context holding
every execution of that run, cache hits included: a CACHED execution has OUTPUT events to the artifacts it reused.
"""

from __future__ import annotations

import ml_metadata as mlmd
import tfx.types.standard_artifacts  # noqa: F401  (registers the classes deserialize_artifact finds by type name)
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler.constants import PIPELINE_RUN_CONTEXT_TYPE_NAME
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable.mlmd import event_lib
from tfx.types import Artifact, artifact_utils

import components.artifacts  # noqa: F401  (the project's artifact classes, likewise)

_COMPLETE = "last_known_state = COMPLETE"
_SUCCEEDED = "last_known_state IN (COMPLETE, CACHED)"  # TFX's execution_lib.is_execution_successful, as a filter


def open_store(sqlite_path: str) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def component_name(execution: metadata_store_pb2.Execution) -> str:
    """The last part of an execution's type name (`MuraExampleGen`): how the helpers here name components."""
    return execution.type.rsplit(".", 1)[-1]


def execution_seconds(execution: metadata_store_pb2.Execution) -> float:
    """From the execution's creation to its last update, as ML Metadata recorded them."""
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def _of(component_class: str, *conditions: str, newest_first: bool = False) -> mlmd.ListOptions:
    """A component's executions by the last part of their type name (`MuraExampleGen`), ordered by id."""
    query = " AND ".join([f"type LIKE '%.{component_class}'", *conditions])
    return mlmd.ListOptions(filter_query=query, order_by=mlmd.OrderByField.ID, is_asc=not newest_first)


def completed_executions(store: mlmd.MetadataStore, component_class: str) -> list[metadata_store_pb2.Execution]:
    """Runs (not cache hits) of a component, oldest first, by the last part of its type name (`MuraExampleGen`)."""
    return store.get_executions(list_options=_of(component_class, _COMPLETE))


def latest_execution(store: mlmd.MetadataStore, component_class: str) -> metadata_store_pb2.Execution | None:
    found = store.get_executions(list_options=_of(component_class, _COMPLETE, newest_first=True))
    return found[0] if found else None


def pipeline_runs(store: mlmd.MetadataStore) -> list[metadata_store_pb2.Context]:
    """TFX's `pipeline_run` contexts (named by the run id), newest first."""
    runs = store.get_contexts_by_type(PIPELINE_RUN_CONTEXT_TYPE_NAME)
    return sorted(runs, key=lambda run: (run.create_time_since_epoch, run.id), reverse=True)


def run_executions(
    store: mlmd.MetadataStore, run: metadata_store_pb2.Context
) -> dict[str, metadata_store_pb2.Execution]:
    """Each component's successful execution in one pipeline run (COMPLETE, or CACHED when TFX reused outputs)."""
    options = mlmd.ListOptions(filter_query=_SUCCEEDED, order_by=mlmd.OrderByField.ID)
    return {component_name(e): e for e in store.get_executions_by_context(run.id, list_options=options)}


def output_artifacts(
    store: mlmd.MetadataStore, executions: list[metadata_store_pb2.Execution]
) -> dict[int, dict[str, Artifact]]:
    """The artifacts each execution wrote (or reused, when cached), by execution id and artifact type name."""
    events = [
        e for e in store.get_events_by_execution_ids([x.id for x in executions]) if event_lib.is_valid_output_event(e)
    ]
    artifacts, types = store.get_artifacts_and_types_by_artifact_ids(sorted({e.artifact_id for e in events}))
    types_by_id = {t.id: t for t in types}
    by_id = {a.id: artifact_utils.deserialize_artifact(types_by_id[a.type_id], a) for a in artifacts}
    found: dict[int, dict[str, Artifact]] = {x.id: {} for x in executions}
    for event in events:
        artifact = by_id[event.artifact_id]
        found[event.execution_id][artifact.type_name] = artifact
    return found


def outputs_of(
    store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution
) -> dict[str, metadata_store_pb2.Artifact]:
    """The artifacts an execution wrote, by artifact type name (e.g. `Examples`), as ML Metadata stores them."""
    return {name: a.mlmd_artifact for name, a in output_artifacts(store, [execution])[execution.id].items()}


def producer(store: mlmd.MetadataStore, artifact: Artifact) -> metadata_store_pb2.Execution:
    """The execution that wrote an artifact: the first with an OUTPUT event to it (later ones are cache hits, which
    do not carry what the executor recorded, such as MuraExampleGen's counts)."""
    events = [e for e in store.get_events_by_artifact_ids([artifact.id]) if event_lib.is_valid_output_event(e)]
    return store.get_executions_by_id([min(e.execution_id for e in events)])[0]


def property_value(properties, key: str) -> int | float | str | None:
    """A (custom) property's plain value; None when absent."""
    return data_types_utils.get_metadata_value(properties[key]) if key in properties else None
