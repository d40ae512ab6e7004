"""The Kubeflow Pipelines v2 package: compiled by `mura kfp compile`, read back with kfp's own pipeline-spec
protos, then executed step by step the way open-source KFP runs it (tests/kfp_local.py), ending with a model
pushed where TF Serving's manifests read."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format, text_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from cli.main import main
from components.served_baseline import SERVED_VERSION
from mura.config import KubeflowConfig, ServingConfig
from mura.model_card import CARD_DIR, CARD_HTML, read_card
from pipeline.definition import UNCACHED
from pipeline.kubeflow_runner import GPU, PVC_LAYOUT, TRAINER_EXECUTOR, KubeflowSettingsError, run_arguments_for
from tests.kfp_local import LocalKfpRun, UnsupportedByOpenSourceKfp, image_environment
from tests.test_kubernetes import by_kind, rendered

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
MOUNT = KubeflowConfig().pvc_mount_path
OPEN_GATE = ["--set", "gate.auc_floor=0", "--set", "gate.study_kappa_floor=-1"]


def compile_package(output: Path, *args: str) -> subprocess.CompletedProcess:
    mura = str(Path(sys.executable).parent / "mura")
    command = [mura, "kfp", "compile", "--output", str(output), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The smoke profile on the PVC's layout, two GPUs for the Trainer, the gate's floors opened."""
    output = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    result = compile_package(output, "--profile", "smoke", "--gpus", "2", "--pvc", "mura-models", *OPEN_GATE)
    assert result.returncode == 0, result.stderr
    return output


@pytest.fixture(scope="module")
def compiled(package: Path) -> tuple:
    """(PipelineSpec, its deployment config, the Kubernetes PlatformSpec), each as kfp's proto."""
    spec_document, platform_document = yaml.safe_load_all(package.read_text())
    spec = json_format.ParseDict(spec_document, pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(spec_document["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())
    platform = json_format.ParseDict(platform_document, pipeline_spec_pb2.PlatformSpec())
    return spec, deployment, platform


def test_nothing_open_source_kfp_cannot_run(compiled) -> None:
    spec, deployment, _ = compiled
    kinds = {name: executor.WhichOneof("spec") for name, executor in deployment.executors.items()}
    assert set(kinds.values()) == {"container"}, kinds
    assert not any(e.container.HasField("lifecycle") for e in deployment.executors.values())
    assert spec.schema_version == "2.1.0"  # parameters reach TFX as parameterValues, which KFP's driver fills
    for name, task in spec.root.dag.tasks.items():
        assert task.caching_options.enable_cache == (name not in UNCACHED), name
        for source in task.inputs.parameters.values():
            if source.HasField("task_output_parameter"):
                assert source.task_output_parameter.producer_task in spec.root.dag.tasks


def test_every_component_runs_in_the_project_image(compiled) -> None:
    spec, deployment, _ = compiled
    containers = {name: e.container for name, e in deployment.executors.items()}
    assert {"MuraExampleGen_executor", "Transform_executor", TRAINER_EXECUTOR, "Evaluator_executor"} <= set(containers)
    assert {c.image for c in containers.values()} == {KubeflowConfig().image}
    assert spec.default_pipeline_root == f"{MOUNT}/{PVC_LAYOUT['pipeline_root']}"


def test_the_run_parameters_have_the_compiled_settings_as_defaults(compiled) -> None:
    spec, _, _ = compiled
    parameters = spec.root.input_definitions.parameters
    assert {"data_root", "serving_root", "kappa_floor", "train", "tfma_eval_config"} <= set(parameters)
    assert parameters["data_root"].default_value.string_value == f"{MOUNT}/{PVC_LAYOUT['data_root']}"
    assert parameters["kappa_floor"].default_value.number_value == -1
    train = json.loads(parameters["train"].default_value.string_value)["train"]
    assert (train["image_size"], train["steps_per_epoch"]) == (32, 3)
    assert all(p.description.startswith("from the settings ") for p in parameters.values())


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
        assert config["pvcMount"] == [{"constant": "mura-models", "mountPath": MOUNT}]
        if name == TRAINER_EXECUTOR:
            assert config["nodeSelector"] == {"labels": dict(KubeflowConfig().gpu_node_selector)}
            assert config["tolerations"] == [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "nodeSelector" not in config and "tolerations" not in config, name


def test_a_folder_no_step_can_see_is_refused_at_compile_time(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["kfp", "compile", "--output", str(tmp_path / "p.yaml"), "--gpus", "0"])
    assert result.exit_code == 2 and "a folder of this machine that no step can see" in result.output
    assert "run.data_root" in result.output and "Traceback" not in result.output


def test_submit_turns_settings_into_the_run_parameters_they_change(package: Path) -> None:
    assert run_arguments_for(package, {}) == {}
    changed = run_arguments_for(package, {"gate.auc_floor": "0.8", "run.data_root": "gs://bucket/mura-2"})
    assert set(changed) == {"tfma_eval_config", "data_root"} and changed["data_root"] == "gs://bucket/mura-2"
    assert "0.8" in changed["tfma_eval_config"]
    epochs = run_arguments_for(package, {"train.finetune_epochs": "3"})
    assert set(epochs) == {"train"} and json.loads(epochs["train"])["train"]["finetune_epochs"] == 3
    with pytest.raises(KubeflowSettingsError, match=r"train\.image_size is fixed when the pipeline is compiled"):
        run_arguments_for(package, {"train.image_size": "64"})
    with pytest.raises(KubeflowSettingsError, match=r"did you mean gate\.auc_floor"):
        run_arguments_for(package, {"gate.auc_flor": "0.8"})


def test_the_submit_command_explains_its_flags() -> None:
    result = CliRunner().invoke(main, ["kfp", "submit", "--help"])
    for flag in ("--param", "--run-name", "--namespace", "--experiment", "--wait"):
        assert flag in result.output


def test_an_unreachable_host_is_one_sentence(package: Path) -> None:
    result = CliRunner().invoke(main, ["kfp", "submit", "--host", "http://127.0.0.1:9", "--package", str(package)])
    assert result.exit_code == 1 and "could not submit to http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_the_compiled_pipeline_runs_step_by_step_and_pushes_where_tf_serving_reads(
    package: Path, sample_root: Path, tmp_path: Path
) -> None:
    """Every task of the compiled YAML, in dependency order, with its own command, as KFP's driver and launcher
    would run it; the PVC is a folder here, the image's project folder this checkout."""
    volume = tmp_path / "volume"
    (volume / PVC_LAYOUT["data_root"]).mkdir(parents=True)
    (volume / PVC_LAYOUT["data_root"] / "MURA-v1.1").symlink_to(sample_root / "MURA-v1.1")
    run = LocalKfpRun(
        package=package,
        run_root=volume / "runs" / "run-1",
        checkout=ROOT,
        path_map={MOUNT: str(volume), KubeflowConfig().project_dir: str(ROOT)},
        environment=image_environment(ROOT / "Dockerfile"),
    )
    results = run.run()
    assert results["DataFingerprint"].parameters["fingerprint"].startswith("split:csv,num_files:4")
    assert results["ServedBaseline"].artifacts["baseline"][0]["metadata"][SERVED_VERSION] == 0
    [pushed] = results["VersionedPusher"].artifacts["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    model_name = ServingConfig().model_name
    served = volume / PVC_LAYOUT["serving_root"] / model_name / "1"
    assert (served / "saved_model.pb").exists()
    assert pushed["metadata"]["pushed_destination"] == str(served)
    card = served / CARD_DIR / CARD_HTML  # the card step ran there too, and its card went with the push
    assert pushed["metadata"]["model_card"] == str(card) and read_card(str(card.parent))["gate"]["blessed"]


def test_the_pusher_writes_where_tf_serving_and_kserve_read(compiled) -> None:
    """The serving root on the PVC, the Deployment's mount of that PVC folder, models.config's base path and
    KServe's storage URI name one folder."""
    spec, _, _ = compiled
    serving_root = spec.root.input_definitions.parameters["serving_root"].default_value.string_value
    model_name = ServingConfig().model_name
    assert serving_root.startswith(MOUNT + "/")
    on_volume = serving_root.removeprefix(MOUNT + "/")  # the folder on the PVC that holds <model>/<version>
    for overlay in ("cpu", "gpu"):
        resources = by_kind(rendered(overlay))
        pod = resources["Deployment"]["spec"]["template"]["spec"]
        [claim] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claim["persistentVolumeClaim"]["claimName"] == "mura-models"
        [mount] = [m for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == claim["name"]]
        assert mount.get("subPath") == on_volume
        models = text_format.Parse(resources["ConfigMap"]["data"]["models.config"], ModelServerConfig())
        [config] = models.model_config_list.config
        assert (config.name, config.base_path) == (model_name, f"{mount['mountPath']}/{model_name}")
    kserve = yaml.safe_load((ROOT / "kubernetes" / "kserve" / "inferenceservice.yaml").read_text())
    assert kserve["spec"]["predictor"]["model"]["storageUri"] == f"pvc://mura-models/{on_volume}/{model_name}"


def test_a_resolver_would_fail_the_run_by_name(package: Path, tmp_path: Path) -> None:
    spec, platform = yaml.safe_load_all(package.read_text())
    spec["deploymentSpec"]["executors"]["ServedBaseline_executor"] = {"resolver": {"outputArtifactQueries": {}}}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([spec, platform]))
    run = LocalKfpRun(package=broken, run_root=tmp_path / "run", checkout=ROOT)
    with pytest.raises(UnsupportedByOpenSourceKfp, match="task ServedBaseline: a resolver executor"):
        run.run_task("ServedBaseline", spec["root"]["dag"]["tasks"]["ServedBaseline"])


def _copied_folders() -> set[str]:
    """The project folders the Dockerfile copies into the image."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return {line.split()[1] for line in lines if line.startswith("COPY ") and (ROOT / line.split()[1]).is_dir()}


def test_the_image_holds_every_module_and_file_the_compiled_pipeline_names(package: Path) -> None:
    spec, _ = yaml.safe_load_all(package.read_text())
    project_dir = KubeflowConfig().project_dir
    named: set[str] = set()
    for executor in spec["deploymentSpec"]["executors"].values():
        args = executor["container"]["args"]
        named.add(args[args.index("--executor_class_path") + 1].rsplit(".", 1)[0])
    text = json.dumps(spec)
    by_path = ("components.modules.trainer.run_fn", "components.modules.transform.preprocessing_fn")
    assert all(path in text for path in by_path) and "components.modules.kappa_metric" in text  # TFMA's metric
    named |= {path.rsplit(".", 1)[0] for path in by_path} | {"components.modules.kappa_metric"}
    copied = _copied_folders()
    for module in named:
        top = module.split(".")[0]
        if top != "tfx":
            assert top in copied, f"{module} is named by the pipeline but {top}/ is not in the image"
            assert (ROOT / (module.replace(".", "/") + ".py")).exists() or (ROOT / module.replace(".", "/")).is_dir()
    schema = spec["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    path = schema["runtimeValue"]["constant"]
    assert path.startswith(project_dir + "/")
    relative = path.removeprefix(project_dir + "/")
    assert (ROOT / relative).is_file() and relative.split("/")[0] in copied
    assert not {"serving", "analysis", "cli", "tests", "notebooks", "bench"} & copied


def test_the_image_installs_the_runtime_set_pinned_as_in_the_lock() -> None:
    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split("==") for line in lines if line and not line.startswith("#"))

    runtime, lock = pins("requirements-runtime.txt"), pins("requirements.lock")
    assert runtime and all(lock.get(name) == version for name, version in runtime.items())
    assert not {"pytest", "ruff", "hypothesis", "kubernetes-validate"} & set(runtime)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements-runtime.txt" in dockerfile and "requirements.lock" not in dockerfile
    assert "\nUSER 1000" in dockerfile
