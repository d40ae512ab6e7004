"""The same pipeline compiled for open-source Kubeflow Pipelines v2, with the Trainer on GPU nodes.

TFX's KubeflowV2DagRunner writes a KFP v2 PipelineSpec (schema 2.1, whose parameters the open-source backend
passes as `parameterValues`, which TFX's container entrypoint reads only with schema 2.1's inputs spec). The
compiled YAML is completed here for what TFX cannot say and what open-source KFP does not run:

- MuraExampleGen's lifecycle hook (a Vertex AI feature) is removed: the `DataFingerprint` step stands in for it;
- the steps that read the world outside the run (`DataFingerprint`, `ServedBaseline`) are never cached;
- the Trainer's container gets `nvidia.com/gpu` and CPU/memory limits, and a second YAML document (the Kubernetes
  platform spec, in kfp-kubernetes' format) pins it to GPU nodes and mounts the PVC in every step;
- the pipeline's description records the settings it was compiled from, which `mura kfp submit` starts from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import tempfile
from pathlib import Path
from typing import Any

import yaml
from tfx import v1 as tfx

from mura.config import KubeflowConfig, RunConfig, Settings
from mura.filesystem import is_uri
from mura.settings import SettingsError, load_settings, setting_fields
from pipeline.definition import SCHEMA_FILE, UNCACHED, create_pipeline
from pipeline.parameters import BY_NAME, COMPILE_TIME, RUN_KEYS, run_arguments

TRAINER_EXECUTOR = "Trainer_executor"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = "nvidia.com/gpu"
SETTINGS_MARK = "Compiled from these settings (mura kfp submit starts from them): "
# Where each run folder lives on the PVC, when one is mounted: TF Serving's manifests read <serving>/<model name>.
PVC_LAYOUT = {"data_root": "data", "pipeline_root": "runs", "serving_root": "serving"}


class KubeflowSettingsError(ValueError):
    """Settings a Kubeflow run cannot use; the message names the setting and what to do."""


def kubeflow_settings(settings: Settings) -> Settings:
    """The run folders as the pods see them: on the PVC by default when one is mounted, and never a folder of
    the machine that compiles (no pod can see it)."""
    kubeflow, run = settings.kubeflow, settings.run
    if kubeflow.pvc_name:
        local_defaults = RunConfig()
        on_volume = {
            name: posixpath.join(kubeflow.pvc_mount_path, folder)
            for name, folder in PVC_LAYOUT.items()
            if getattr(run, name) == getattr(local_defaults, name)
        }
        run = dataclasses.replace(run, **on_volume)
    for name in ("data_root", "pipeline_root", "serving"):
        path = getattr(run, name)
        reachable = is_uri(path) or (kubeflow.pvc_name and _under(path, kubeflow.pvc_mount_path))
        if not reachable:
            where = f"a path under the PVC mount {kubeflow.pvc_mount_path}" if kubeflow.pvc_name else "--pvc NAME"
            raise KubeflowSettingsError(
                f"run.{'serving_root' if name == 'serving' else name} is {path}, a folder of this machine that no "
                f"step can see: give a URI (gs://..., s3://...) or {where}"
            )
    return dataclasses.replace(settings, run=run)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def compile_spec(settings: Settings) -> dict:
    """The PipelineSpec as a dict, as TFX compiles it."""
    kubeflow = settings.kubeflow
    schema = os.path.join(kubeflow.project_dir, os.path.relpath(SCHEMA_FILE, PROJECT_ROOT))
    pipeline = create_pipeline(settings, kubeflow=True, schema_file=schema)
    with tempfile.TemporaryDirectory() as folder:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
                default_image=kubeflow.image, use_pipeline_spec_2_1=True
            ),
            output_dir=folder,
            output_filename="pipeline.json",
        )
        return runner.run(pipeline, write_out=False)["pipelineSpec"]


def _for_open_source_kfp(spec: dict, settings: Settings) -> None:
    tasks = spec["root"]["dag"]["tasks"]
    for executor in spec["deploymentSpec"]["executors"].values():
        executor.get("container", {}).pop("lifecycle", None)
    for name, task in tasks.items():
        if name in UNCACHED:
            task["cachingOptions"] = {"enableCache": False}
        # TFX names an upstream output parameter's producer "<task>_task", a task no DAG holds.
        for source in task.get("inputs", {}).get("parameters", {}).values():
            producer = source.get("taskOutputParameter", {})
            if producer and producer["producerTask"] not in tasks:
                producer["producerTask"] = producer["producerTask"].removesuffix("_task")
    # TFX leaves the run parameters without defaults (they would go in a Vertex job); a run that sets none of
    # them gets the settings the package was compiled from.
    for name, definition in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if name in BY_NAME:
            definition["defaultValue"] = BY_NAME[name].default(settings)
            definition["description"] = "from the settings " + ", ".join(BY_NAME[name].keys)


def _trainer_resources(spec: dict, kubeflow: KubeflowConfig) -> None:
    executors = spec["deploymentSpec"]["executors"]
    if TRAINER_EXECUTOR not in executors:
        raise KeyError(f"no {TRAINER_EXECUTOR} in the compiled pipeline; executors are {sorted(executors)}")
    resources = executors[TRAINER_EXECUTOR]["container"].setdefault("resources", {})
    resources.update({"cpuLimit": kubeflow.trainer_cpu, "memoryLimit": kubeflow.trainer_memory_gb})
    if kubeflow.trainer_gpus:
        resources["accelerator"] = {"type": GPU, "count": str(kubeflow.trainer_gpus)}


def platform_spec(spec: dict, kubeflow: KubeflowConfig) -> dict:
    """kfp-kubernetes' KubernetesExecutorConfig per executor: GPU node placement, and the PVC mount."""
    executors: dict[str, dict] = {}
    if kubeflow.pvc_name:
        for name in spec["deploymentSpec"]["executors"]:
            executors[name] = {
                "pvcMount": [{"constant": kubeflow.pvc_name, "mountPath": kubeflow.pvc_mount_path}],
            }
    if kubeflow.trainer_gpus:
        trainer = executors.setdefault(TRAINER_EXECUTOR, {})
        trainer["nodeSelector"] = {"labels": dict(kubeflow.gpu_node_selector)}
        trainer["tolerations"] = [
            {"key": key, "operator": operator, "effect": effect} for key, operator, effect in kubeflow.gpu_tolerations
        ]
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def compile_pipeline(output: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """Writes the two-document YAML that KFP v2 (`kfp.Client().create_run_from_pipeline_package`) takes; returns
    its path and its run parameters with their defaults."""
    settings = kubeflow_settings(settings)
    spec = compile_spec(settings)
    spec["defaultPipelineRoot"] = settings.run.pipeline_root  # open-source KFP reads it here, not from a job
    _for_open_source_kfp(spec, settings)
    _trainer_resources(spec, settings.kubeflow)
    flat = {f.key: f.default for f in setting_fields(settings)}
    spec["pipelineInfo"]["description"] = SETTINGS_MARK + json.dumps({"profile": settings.profile, **flat})
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as handle:
        yaml.safe_dump_all([spec, platform_spec(spec, settings.kubeflow)], handle, sort_keys=False)
    return output, package_defaults(spec)


def package_defaults(spec: dict) -> dict[str, Any]:
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: definition.get("defaultValue") for name, definition in parameters.items()}


def run_arguments_for(package: Path, overrides: dict[str, str]) -> dict[str, Any]:
    """The arguments of a run: the package's own settings with `overrides` (SECTION.FIELD -> text), turned into the
    run parameters they change."""
    spec = next(yaml.safe_load_all(package.read_text()))
    description = spec.get("pipelineInfo", {}).get("description", "")
    if SETTINGS_MARK not in description:
        raise KubeflowSettingsError(f"{package} was not compiled by `mura kfp compile`: recompile it")
    compiled = json.loads(description.split(SETTINGS_MARK, 1)[1])
    known = {f.key for f in setting_fields()}
    for key in overrides:
        if key in COMPILE_TIME or (key in known and key not in RUN_KEYS):
            raise KubeflowSettingsError(
                f"{key} is fixed when the pipeline is compiled: recompile with `mura kfp compile --set {key}=...`; "
                f"a run can change {', '.join(sorted(RUN_KEYS - COMPILE_TIME))}"
            )
    try:
        settings = load_settings(compiled.pop("profile"), environ={}, overrides={**compiled, **overrides})
    except SettingsError as error:
        raise KubeflowSettingsError(str(error)) from None
    return run_arguments(package_defaults(spec), settings)
