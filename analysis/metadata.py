"""Reading a local run's results back from ML Metadata, so commands can say what happened."""

from __future__ import annotations

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2


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


def completed_executions(store: mlmd.MetadataStore, component_class: str) -> list[metadata_store_pb2.Execution]:
    """Runs (not cache hits) of a component, oldest first, by the last part of its type name (`MuraExampleGen`)."""
    executions = [
        e
        for e in store.get_executions()
        if component_name(e) == component_class and e.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    return sorted(executions, key=lambda e: e.id)


def latest_execution(store: mlmd.MetadataStore, component_class: str) -> metadata_store_pb2.Execution | None:
    executions = completed_executions(store, component_class)
    return executions[-1] if executions else None


def outputs_of(store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution) -> dict[str, object]:
    """The artifacts an execution wrote, by artifact type name (e.g. `Examples`)."""
    events = store.get_events_by_execution_ids([execution.id])
    ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    types = {t.id: t.name for t in store.get_artifact_types()}
    return {types[a.type_id]: a for a in store.get_artifacts_by_id(ids)}


def property_value(properties, key: str) -> int | float | str | None:
    if key not in properties:
        return None
    value = properties[key]
    return getattr(value, value.WhichOneof("value"))
