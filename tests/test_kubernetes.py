"""The Kubernetes manifests, offline: each overlay rendered (kubectl kustomize, or tests/kustomize.py where
kubectl is missing) and validated with `kubernetes-validate --strict`; the KServe resource checked for the
fields its CRD requires; TF Serving's config and the pipeline's serving layout agree."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mura.config import ServingConfig
from serving.tf_serving import batching_config, models_config
from tests.kustomize import render

KUBERNETES = Path(__file__).resolve().parents[1] / "kubernetes"


def rendered(overlay: str) -> list[dict]:
    folder = KUBERNETES / "overlays" / overlay
    kubectl = shutil.which("kubectl")
    if kubectl:
        output = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True)
        return [d for d in yaml.safe_load_all(output.stdout) if d]
    return render(folder)


def by_kind(documents: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in documents}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_every_rendered_manifest_passes_strict_validation(overlay: str, tmp_path: Path) -> None:
    documents = rendered(overlay)
    assert sorted(by_kind(documents)) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "Service",
    ]
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    validator = str(Path(sys.executable).parent / "kubernetes-validate")
    result = subprocess.run([validator, "--strict", str(manifest)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(documents)


def test_tf_serving_reads_the_pushed_layout_with_the_projects_config() -> None:
    resources = by_kind(rendered("cpu"))
    config = resources["ConfigMap"]["data"]
    assert config["models.config"] == models_config("mura", "/models/mura")
    assert config["batching.config"] == batching_config(ServingConfig())
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    models = {"mountPath": "/models", "name": "models", "readOnly": True, "subPath": "serving"}
    assert models in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/mura/metadata"
    assert {p["containerPort"] for p in container["ports"]} == {ServingConfig().grpc_port, ServingConfig().rest_port}
    assert (
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == resources["PersistentVolumeClaim"]["metadata"]["name"]
    )


def test_only_the_gpu_overlay_asks_for_gpus_and_gpu_nodes() -> None:
    cpu = by_kind(rendered("cpu"))["Deployment"]["spec"]["template"]["spec"]
    gpu = by_kind(rendered("gpu"))["Deployment"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"] and "nodeSelector" not in cpu
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["containers"][0]["resources"]["limits"]["memory"] == "8Gi"  # merged into, not replacing, the base
    assert gpu["containers"][0]["image"].endswith("-gpu")
    assert gpu["nodeSelector"] and gpu["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_the_kserve_alternative_has_what_its_crd_requires() -> None:
    service = yaml.safe_load((KUBERNETES / "kserve" / "inferenceservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert service["metadata"]["name"]
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["storageUri"].startswith("pvc://mura-models/")  # the folder: tests/test_kubeflow.py


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_a_config_change_rolls_the_pods_and_the_autoscaler_alone_counts_them(overlay: str) -> None:
    resources = by_kind(rendered(overlay))
    config_map = resources["ConfigMap"]["metadata"]["name"]
    assert config_map.startswith("mura-serving-config-") and len(config_map) > len("mura-serving-config-")
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "config", "configMap": {"name": config_map}} in pod["volumes"]
    assert "replicas" not in resources["Deployment"]["spec"]
    assert {d["metadata"].get("namespace") for d in resources.values()} == {"mura"}


def test_tf_serving_exports_its_metrics_where_prometheus_scrapes() -> None:
    from serving.tf_serving import monitoring_config

    resources = by_kind(rendered("cpu"))
    path = ServingConfig().monitoring_path
    assert resources["ConfigMap"]["data"]["monitoring.config"] == monitoring_config(path)
    template = resources["Deployment"]["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert "--monitoring_config_file=/config/monitoring.config" in container["args"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == path
    assert int(annotations["prometheus.io/port"]) == ServingConfig().rest_port
