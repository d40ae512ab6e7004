"""The same pipeline compiled for Kubeflow Pipelines v2, with the Trainer on GPU nodes.

TFX's KubeflowV2DagRunner writes a KFP v2 PipelineSpec but cannot ask for node selectors or tolerations; the
compiled YAML is completed here: the Trainer's container gets `nvidia.com/gpu` and CPU/memory resources, and a
second YAML document (the Kubernetes platform spec, in kfp-kubernetes' format) pins it to GPU nodes and, when
configured, mounts a PVC in every step.
"""

from __future__ import annotations

import os
import tempfile

import yaml
from tfx import v1 as tfx

from mura.config import KubeflowConfig, Settings
from pipeline.definition import SCHEMA_FILE, create_pipeline

TRAINER_EXECUTOR = "Trainer_executor"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = "nvidia.com/gpu"


def compile_spec(settings: Settings) -> dict:
    """The PipelineSpec as a dict, as TFX compiles it."""
    kubeflow = settings.kubeflow
    schema = os.path.join(kubeflow.project_dir, os.path.relpath(SCHEMA_FILE, PROJECT_ROOT))
    pipeline = create_pipeline(settings, local_metadata=False, schema_file=schema)
    with tempfile.TemporaryDirectory() as folder:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=kubeflow.image),
            output_dir=folder,
            output_filename="pipeline.json",
        )
        return runner.run(pipeline, write_out=False)["pipelineSpec"]


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


def compile_pipeline(output: str, settings: Settings) -> str:
    """Writes the two-document YAML that KFP v2 (`kfp.Client().create_run_from_pipeline_package`) takes."""
    kubeflow = settings.kubeflow
    spec = compile_spec(settings)
    spec["defaultPipelineRoot"] = settings.run.pipeline_root  # open-source KFP reads it here, not from a job
    _trainer_resources(spec, kubeflow)
    documents = [spec, platform_spec(spec, kubeflow)]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as handle:
        yaml.safe_dump_all(documents, handle, sort_keys=False)
    return output
