"""The Kubeflow Pipelines v2 package: compiled by `mura kfp compile`, read back with kfp's own pipeline-spec
protos, the Trainer alone on GPU nodes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from mura.config import KubeflowConfig
from pipeline.kubeflow_runner import GPU, TRAINER_EXECUTOR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple:
    """(PipelineSpec, its deployment config, the Kubernetes PlatformSpec), each as kfp's proto."""
    output = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    environment = {**os.environ, "MURA_RUN_DATA_ROOT": "gs://bucket/mura", "MURA_RUN_PIPELINE_ROOT": "gs://bucket/runs"}
    mura = str(Path(sys.executable).parent / "mura")
    command = [mura, "kfp", "compile", "--output", str(output), "--gpus", "2", "--pvc", "mura-data"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    spec_document, platform_document = yaml.safe_load_all(output.read_text())
    spec = json_format.ParseDict(spec_document, pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(spec_document["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    platform = json_format.ParseDict(platform_document, pipeline_spec_pb2.PlatformSpec())
    return spec, deployment, platform


def test_every_component_runs_in_the_project_image(compiled) -> None:
    spec, deployment, _ = compiled
    containers = {name: e.container for name, e in deployment.executors.items() if e.HasField("container")}
    assert {"MuraExampleGen_executor", "Transform_executor", TRAINER_EXECUTOR, "Evaluator_executor"} <= set(containers)
    assert {c.image for c in containers.values()} == {KubeflowConfig().image}
    assert spec.default_pipeline_root == "gs://bucket/runs"


def test_only_the_trainer_asks_for_gpus(compiled) -> None:
    _, deployment, _ = compiled
    for name, executor in deployment.executors.items():
        accelerator = executor.container.resources.accelerator
        if name == TRAINER_EXECUTOR:
            assert (accelerator.type, accelerator.count) == (GPU, 2)
            assert executor.container.resources.cpu_limit == KubeflowConfig().trainer_cpu
        else:
            assert not accelerator.type, name


def test_only_the_trainer_lands_on_gpu_nodes_and_every_step_mounts_the_pvc(compiled) -> None:
    _, deployment, platform = compiled
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    assert set(executors) == set(deployment.executors)
    for name, config in executors.items():
        config = json_format.MessageToDict(config)
        assert config["pvcMount"] == [{"constant": "mura-data", "mountPath": KubeflowConfig().pvc_mount_path}]
        if name == TRAINER_EXECUTOR:
            assert config["nodeSelector"] == {"labels": dict(KubeflowConfig().gpu_node_selector)}
            assert config["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "nodeSelector" not in config and "tolerations" not in config, name


def test_the_schema_is_read_from_the_image(compiled) -> None:
    spec, _, _ = compiled
    schema_gen = spec.root.dag.tasks["ImportSchemaGen"].inputs.parameters["schema_file"]
    assert schema_gen.runtime_value.constant_value.string_value == "/mura/pipeline/schema/schema.pbtxt"
