"""A compiled KFP v2 package executed step by step the way open-source Kubeflow Pipelines runs it, without a cluster.

For each task, in dependency order, this does what KFP's driver and launcher do (kubeflow/pipelines,
backend/src/v2/driver and backend/src/v2/component): resolve the task's input parameters (constants, the run's
parameters, upstream output parameters) and input artifacts (upstream outputs, with the metadata their executor
wrote), give each output artifact a URI under the pipeline root, write the `ExecutorInput`, substitute it for
`{{$}}` in the executor's own compiled `command` and `args`, run that as a subprocess with the image's
environment, and read back the `ExecutorOutput` it wrote. Executor kinds that the open-source backend does not
implement (resolvers; lifecycle hooks, a Vertex AI feature) fail by name, as the backend would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class UnsupportedByOpenSourceKfp(Exception):
    """The package holds something the open-source KFP v2 backend cannot run."""


@dataclass
class TaskResult:
    artifacts: dict[str, list[dict]] = field(default_factory=dict)  # output key -> RuntimeArtifacts
    parameters: dict[str, object] = field(default_factory=dict)  # output key -> value
    log: str = ""


def image_environment(dockerfile: Path) -> dict[str, str]:
    """The `ENV` lines of the Dockerfile: what every step's container starts with."""
    text = dockerfile.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return found


def _constant(value: Mapping) -> object:
    """A compiled constant, in the old (`stringValue`/`intValue`/`doubleValue`) or new (`constant`) form."""
    if "constant" in value:
        return value["constant"]
    (kind, raw), *_ = value["constantValue"].items()
    return {"intValue": int, "doubleValue": float}.get(kind, str)(raw)


def _order(tasks: Mapping[str, Mapping]) -> list[str]:
    """Tasks in an order where every task follows the ones it depends on."""
    done: list[str] = []
    pending = dict(tasks)
    while pending:
        ready = sorted(name for name, task in pending.items() if set(task.get("dependentTasks", [])) <= set(done))
        if not ready:
            raise UnsupportedByOpenSourceKfp(f"the DAG has a cycle among {sorted(pending)}")
        for name in ready:
            done.append(name)
            del pending[name]
    return done


@dataclass
class LocalKfpRun:
    package: Path
    run_root: Path  # stands for the pipeline root the run writes under
    checkout: Path  # stands for the image's project folder
    path_map: dict[str, str] = field(default_factory=dict)  # paths inside the pods -> local folders
    parameters: dict[str, object] = field(default_factory=dict)  # the run's parameters
    environment: dict[str, str] = field(default_factory=dict)
    results: dict[str, TaskResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec, self.platform = yaml.safe_load_all(self.package.read_text())

    def _local(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        for remote, local in sorted(self.path_map.items(), key=lambda item: -len(item[0])):
            value = re.sub(rf"(?<![\w/]){re.escape(remote)}(?=/|$|\")", local, value)
        return value

    def pipeline_parameter(self, name: str) -> object:
        if name in self.parameters:
            return self.parameters[name]
        definition = self.spec["root"]["inputDefinitions"]["parameters"][name]
        if "defaultValue" in definition:
            return definition["defaultValue"]
        raise KeyError(f"the run gives no value for the pipeline parameter {name!r}, and it has no default")

    def input_parameters(self, task: Mapping) -> dict[str, object]:
        values = {}
        for name, source in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in source:
                value = _constant(source["runtimeValue"])
            elif "componentInputParameter" in source:
                value = self.pipeline_parameter(source["componentInputParameter"])
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                value = self.results[producer["producerTask"]].parameters[producer["outputParameterKey"]]
            else:
                raise UnsupportedByOpenSourceKfp(f"input parameter {name} has an unknown source: {source}")
            values[name] = self._local(value)
        return values

    def input_artifacts(self, task: Mapping) -> dict[str, dict]:
        artifacts = {}
        for name, source in task.get("inputs", {}).get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            produced = self.results[producer["producerTask"]].artifacts[producer["outputArtifactKey"]]
            artifacts[name] = {"artifacts": produced}
        return artifacts

    def run(self) -> dict[str, TaskResult]:
        tasks = self.spec["root"]["dag"]["tasks"]
        for name in _order(tasks):
            self.results[name] = self.run_task(name, tasks[name])
        return self.results

    def run_task(self, name: str, task: Mapping) -> TaskResult:
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "container" not in executor:
            kind = next(iter(executor))
            raise UnsupportedByOpenSourceKfp(f"task {name}: a {kind} executor (open-source KFP v2 runs containers)")
        container = executor["container"]
        if "lifecycle" in container:
            raise UnsupportedByOpenSourceKfp(f"task {name}: lifecycle hooks {sorted(container['lifecycle'])}")
        task_root = self.run_root / name
        task_root.mkdir(parents=True, exist_ok=True)
        outputs = component.get("outputDefinitions", {})
        output_artifacts = {
            key: {
                "artifacts": [
                    {
                        "name": f"{name}-{key}",
                        "type": {"instanceSchema": spec["artifactType"]["instanceSchema"]},
                        "uri": str(task_root / key),
                    }
                ]
            }
            for key, spec in outputs.get("artifacts", {}).items()
        }
        output_parameters = {
            key: {"outputFile": str(task_root / "parameters" / key)} for key in outputs.get("parameters", {})
        }
        executor_input = {
            "inputs": {"parameterValues": self.input_parameters(task), "artifacts": self.input_artifacts(task)},
            "outputs": {
                "artifacts": output_artifacts,
                "parameters": output_parameters,
                "outputFile": str(task_root / "executor_output.json"),
            },
        }
        serialized = json.dumps(executor_input)
        command = [part.replace("{{$}}", serialized) for part in [*container["command"], *container.get("args", [])]]
        if command[0] == "python":
            command[0] = sys.executable  # the image's interpreter is this checkout's
        finished = subprocess.run(
            command,
            cwd=self.checkout,
            env={**os.environ, **self.environment},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"task {name} failed ({finished.returncode}):\n{finished.stderr[-6000:]}")
        return self._read_outputs(executor_input, finished.stderr)

    @staticmethod
    def _read_outputs(executor_input: Mapping, log: str) -> TaskResult:
        result = TaskResult(log=log)
        written = Path(executor_input["outputs"]["outputFile"])
        output = json.loads(written.read_text()) if written.exists() else {}
        for key, declared in executor_input["outputs"]["artifacts"].items():
            artifacts = output.get("artifacts", {}).get(key, {}).get("artifacts") or declared["artifacts"]
            # The launcher keeps the URIs it gave and takes the metadata the executor wrote.
            result.artifacts[key] = [
                {**given, "metadata": returned.get("metadata", {})}
                for given, returned in zip(declared["artifacts"], artifacts, strict=True)
            ]
        result.parameters.update(output.get("parameterValues", {}))
        return result
