"""TF Serving's ModelServerConfig as the project's server reads it: several models, each with its base path, its
`model_version_policy` (latest N, specific versions, all) and its `version_labels`; the same checks and error
messages as TF Serving's ServerCore, and the versions each policy selects from a folder, as its file-system source
selects them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from serving.errors import ServingError, invalid

log = logging.getLogger(__name__)

Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
TENSORFLOW = "tensorflow"
LABEL = re.compile(r"^\w+$")  # TF Serving: labels are word characters


@dataclass(frozen=True)
class ModelEntry:
    """One `config { ... }` of a model_config_list."""

    name: str
    base_path: str
    policy: Policy = field(compare=False)
    labels: dict[str, int]
    policy_text: str = ""  # the policy as text, so that two entries compare by value

    @classmethod
    def from_proto(cls, config: model_server_config_pb2.ModelConfig) -> ModelEntry:
        policy = Policy()
        policy.CopyFrom(config.model_version_policy)
        return cls(
            config.name,
            config.base_path,
            policy,
            dict(config.version_labels),
            text_format.MessageToString(policy, as_one_line=True),
        )


def parse(text: str) -> list[ModelEntry]:
    """The models of a ModelServerConfig text proto, checked as TF Serving checks them (INVALID_ARGUMENT)."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise invalid(f"cannot parse ModelServerConfig: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise invalid("only a model_config_list is supported (custom_model_config needs TF Serving's own loaders)")
    entries = [ModelEntry.from_proto(model) for model in config.model_config_list.config]
    names: set[str] = set()
    for model, entry in zip(config.model_config_list.config, entries, strict=True):
        if not entry.name:
            raise invalid("every model in the config list needs a name")
        if entry.name in names:
            raise invalid(f"Illegal to list model {entry.name} multiple times in config list")
        names.add(entry.name)
        platform = model.model_platform
        if model.model_type:  # the deprecated enum: TENSORFLOW is 1
            if platform:
                raise invalid(
                    "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                    f"ModelServerConfig::model_platform, model name is {entry.name}"
                )
            platform = TENSORFLOW if model.model_type == model_server_config_pb2.TENSORFLOW else "other"
        if not platform:
            raise invalid(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {entry.name}"
            )
        if platform != TENSORFLOW:
            raise invalid(f"model {entry.name}: platform '{platform}' is not served here; only '{TENSORFLOW}' is")
        parsed = urlparse(entry.base_path)
        if not parsed.scheme and not entry.base_path.startswith("/"):
            raise invalid(
                f"Expected model {entry.name} to have an absolute path or URI; got base_path()={entry.base_path}"
            )
        for label in entry.labels:
            if not LABEL.match(label):
                raise invalid(f"model {entry.name}: version label '{label}' must be word characters ([a-zA-Z0-9_]+)")
    return entries


def aspired_versions(policy: Policy, on_disk: list[int]) -> list[int]:
    """The versions of `on_disk` a policy asks for, newest first, as TF Serving's file-system source picks them."""
    newest_first = sorted(on_disk, reverse=True)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return newest_first
    if choice == "specific":
        wanted = set(policy.specific.versions)
        if not wanted:
            log.warning("No specific versions requested")
        return [v for v in newest_first if v in wanted]
    return newest_first[: max(policy.latest.num_versions, 1)]  # latest; the default, latest 1


def policy_from_setting(text: str) -> Policy:
    """`latest:N`, `all` or `specific:V1,V2` (the setting's form) as TF Serving's ServableVersionPolicy."""
    kind, _, values = text.strip().partition(":")
    policy = Policy()
    try:
        if kind == "latest":
            policy.latest.num_versions = int(values or 1)
            if policy.latest.num_versions < 1:
                raise ValueError
        elif kind == "all" and not values:
            policy.all.SetInParent()
        elif kind == "specific" and values:
            policy.specific.versions.extend(int(v) for v in values.split(","))
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"version policy must be latest:N, all or specific:V1,V2 (integers), got {text!r}") from None
    return policy


def labels_from_setting(pairs: tuple[str, ...]) -> dict[str, int]:
    """`("stable=3", "canary=4")` (the setting's form) as TF Serving's version_labels."""
    labels = {}
    for pair in pairs:
        label, _, version = pair.partition("=")
        if not LABEL.match(label) or not version.strip().isdigit():
            raise ValueError(f"a version label is LABEL=VERSION with LABEL of word characters, got {pair!r}")
        labels[label] = int(version)
    return labels


def unavailable_label(model: str, version: int) -> ServingError:
    """TF Serving's refusal of a label that names a version which is not loaded (FAILED_PRECONDITION)."""
    return ServingError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Request to assign label to version {version} of model {model}, which is not currently available for "
        "inference",
    )
