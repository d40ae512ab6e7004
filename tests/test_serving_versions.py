"""TF Serving's version policy and labels on `mura serve --model-config-file`, driven over HTTP and gRPC: several
models, latest N / specific / all, version labels for canary and rollback, the status of every version, TF
Serving's errors for an unknown label or a version that is not served, and a config file re-read when it changes.

Each version of the small models answers its own probability, so an answer says which version served it."""

import base64
import itertools
import os
import re
import threading
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from mura.config import ServingConfig
from serving import tf_serving
from serving.errors import ServingError
from serving.model_config import aspired_versions, parse, policy_from_setting
from serving.server import start
from tests.serve_process import ServeProcess, tf_serving_missing
from tests.small_models import add_version, export, png

MARKERS = {("mura", 1): 0.1, ("mura", 2): 0.2, ("mura", 3): 0.3, ("other", 1): 0.9}
POLL = 1  # seconds between reads of the config file (TF Serving's smallest)
IMAGE = {"b64": base64.b64encode(png()).decode()}


def model_block(name: str, path: Path, policy: str, labels: dict[str, int] | None = None) -> str:
    """One model of a ModelServerConfig, written by hand as a user writes it."""
    label_lines = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in (labels or {}).items())
    return (
        f'  config {{\n    name: "{name}"\n    base_path: "{path}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ {policy} }}\n{label_lines}  }}\n"
    )


def write_config(path: Path, *blocks: str) -> None:
    """Replaced whole (written aside, renamed), so the server never reads half a file."""
    staging = path.with_suffix(".staging")
    staging.write_text("model_config_list {\n" + "".join(blocks) + "}\n")
    os.replace(staging, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/mura/{1,2,3} and <root>/other/1, each version answering its marker."""
    root = tmp_path_factory.mktemp("models")
    for (name, version), marker in MARKERS.items():
        (root / name).mkdir(exist_ok=True)
        add_version(root / name, version, export(root / f"export-{name}-{version}", marker=marker, ballast=16))
    return root


def initial_config(models: Path) -> tuple[str, str]:
    mura = model_block("mura", models / "mura", "specific { versions: 1 versions: 2 }", {"stable": 1, "canary": 2})
    return mura, model_block("other", models / "other", "latest { num_versions: 1 }")


@pytest.fixture(scope="module", params=["local", "tf-serving"])
def server(request, models: Path, tmp_path_factory: pytest.TempPathFactory):
    if tf_serving_missing(request.param):
        pytest.skip("tensorflow_model_server is not on PATH: ran against the project's server only")
    folder = tmp_path_factory.mktemp("config")
    config = folder / "models.config"
    write_config(config, *initial_config(models))
    args = ["--model-config-file", str(config), "--model-config-file-poll-wait-seconds", str(POLL)]
    args += ["--allow-version-labels-for-unavailable-models", "--poll-seconds", "0.2"]
    served = ServeProcess(request.param, args, folder / "serve.log")
    served.config = config
    yield served
    assert served.stop() == 0, served.log()


def states(server: ServeProcess, name: str = "mura") -> dict[int, str]:
    code, body = server.http("GET", f"/v1/models/{name}")
    return {int(s["version"]): s["state"] for s in body["model_version_status"]} if code == 200 else {}


def rest_answer(server: ServeProcess, path: str) -> float:
    code, body = server.http("POST", path, {"instances": [IMAGE]})
    assert code == 200, body
    return body["predictions"][0]["probability"]


def grpc_predict(server: ServeProcess, name: str = "mura", version: int | None = None, label: str = ""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png()], dtype=tf.string))
    response = server.prediction().Predict(request, timeout=60)
    return response.model_spec.version.value, float(tf.make_ndarray(response.outputs["probability"])[0])


def restore(server: ServeProcess, models: Path) -> None:
    """Back to the initial config (specific 1 and 2, stable=1, canary=2), for the next test."""
    write_config(server.config, *initial_config(models))
    server.wait_until(lambda: grpc_predict(server, label="stable")[0] == 1 and states(server)[2] == "AVAILABLE", 60, "")


def test_every_served_version_is_listed_and_answers_by_number_and_label(server) -> None:
    assert states(server) == {1: "AVAILABLE", 2: "AVAILABLE"}  # version 3 is on disk, not in the policy
    assert states(server, "other") == {1: "AVAILABLE"}
    assert rest_answer(server, "/v1/models/mura:predict") == pytest.approx(0.2)  # the newest served
    assert rest_answer(server, "/v1/models/mura/versions/1:predict") == pytest.approx(0.1)
    assert rest_answer(server, "/v1/models/mura/labels/stable:predict") == pytest.approx(0.1)
    assert rest_answer(server, "/v1/models/mura/labels/canary:predict") == pytest.approx(0.2)
    assert rest_answer(server, "/v1/models/other:predict") == pytest.approx(0.9)
    assert grpc_predict(server, label="stable") == (1, pytest.approx(0.1))
    assert grpc_predict(server, label="canary") == (2, pytest.approx(0.2))
    assert grpc_predict(server, version=1) == (1, pytest.approx(0.1))
    code, metadata = server.http("GET", "/v1/models/mura/labels/canary/metadata")
    assert code == 200 and metadata["model_spec"]["version"] == "2"
    status = server.models().GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "mura"}), timeout=60
    )
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, available), (2, available)]


@pytest.mark.local_only
def test_status_by_label_is_the_labelled_versions(server) -> None:
    """TF Serving's documentation gives /labels/ paths for status too; its GetModelStatus lists every version
    whatever the label, so this is checked on the project's server only."""
    if server.kind != "local":
        pytest.skip("TF Serving's status ignores the label")
    code, body = server.http("GET", "/v1/models/mura/labels/canary")
    assert code == 200 and [s["version"] for s in body["model_version_status"]] == ["2"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v1/models/mura/labels/nope:predict", 400, "Unrecognized servable version label: nope"),
        ("/v1/models/mura/versions/3:predict", 404, "Servable not found for request: Specific(mura, 3)"),
        ("/v1/models/nothing:predict", 404, "Servable not found for request: Latest(nothing)"),
        ("/v1/models/mura/labels/nope/metadata", 400, "Unrecognized servable version label: nope"),
    ],
)
def test_unknown_label_and_unserved_version_get_tf_servings_errors(server, path, status, message) -> None:
    method = "GET" if path.endswith("metadata") else "POST"
    code, body = server.http(method, path, None if method == "GET" else {"instances": [IMAGE]})
    assert (code, body) == (status, {"error": message})


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ({"label": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope"),
        ({"version": 3}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(mura, 3)"),
    ],
)
def test_grpc_errors_for_an_unknown_label_or_version(server, spec, code, message) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(server, **spec)
    assert (raised.value.code(), raised.value.details()) == (code, message)


def test_rollback_is_one_config_change_and_no_request_fails_meanwhile(server, models: Path) -> None:
    """Promote canary to stable, then roll back: each is one edit of the config file; clients asking for
    `stable` are answered throughout, by the old version until the change and by the new one after."""
    mura, other = initial_config(models)
    answers: list[int] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def ask() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answers.append(grpc_predict(server, label="stable")[0])
            except grpc.RpcError as error:
                failures.append(error)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        promoted = model_block("mura", models / "mura", "specific { versions: 1 versions: 2 }", {"stable": 2})
        write_config(server.config, promoted, other)
        server.wait_until(lambda: answers and answers[-1] == 2, 30, "did not promote version 2")
        write_config(server.config, mura, other)  # the rollback
        server.wait_until(lambda: answers[-1] == 1, 30, "did not roll back to version 1")
    finally:
        stop.set()
        asking.join()
    assert failures == []
    switches = [a for a, b in itertools.pairwise(answers) if a != b]
    assert answers[0] == 1 and switches == [1, 2], "stable moved 1 -> 2 -> 1, once each way"


def test_version_policies_load_and_unload_what_they_name(server, models: Path) -> None:
    other = initial_config(models)[1]
    for policy, expected in [
        ("latest { num_versions: 2 }", {1: "END", 2: "AVAILABLE", 3: "AVAILABLE"}),
        ("all {}", {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}),
        ("specific { versions: 3 }", {1: "END", 2: "END", 3: "AVAILABLE"}),
    ]:
        write_config(server.config, model_block("mura", models / "mura", policy), other)
        server.wait_until(lambda e=expected: states(server) == e, 60, f"did not apply {policy}")
        served = [v for v, s in expected.items() if s == "AVAILABLE"]
        assert rest_answer(server, "/v1/models/mura:predict") == pytest.approx(MARKERS["mura", max(served)])
        for version in expected:
            code, _ = server.http("POST", f"/v1/models/mura/versions/{version}:predict", {"instances": [IMAGE]})
            assert code == (200 if version in served else 404), (policy, version)
    restore(server, models)


def test_a_model_dropped_from_the_config_is_unloaded_and_comes_back(server, models: Path) -> None:
    mura, other = initial_config(models)
    write_config(server.config, mura)
    server.wait_until(lambda: states(server, "other") == {1: "END"}, 60, "did not unload 'other'")
    code, body = server.http("POST", "/v1/models/other:predict", {"instances": [IMAGE]})
    assert (code, body) == (404, {"error": "Servable not found for request: Latest(other)"})
    write_config(server.config, mura, other)
    server.wait_until(lambda: states(server, "other") == {1: "AVAILABLE"}, 60, "did not load 'other' again")


def test_a_label_moved_to_a_version_not_loaded_is_refused_whole(server, models: Path) -> None:
    """TF Serving refuses to move an existing label to a version that is not available (even with
    --allow_version_labels_for_unavailable_models): the change is not applied at all, the old config serves."""
    other = initial_config(models)[1]
    moved = model_block("mura", models / "mura", "specific { versions: 1 versions: 2 versions: 3 }", {"stable": 3})
    write_config(server.config, moved, other)
    time.sleep(4 * POLL)
    served = {v: s for v, s in states(server).items() if s != "END"}  # END: versions unloaded by earlier tests
    assert served == {1: "AVAILABLE", 2: "AVAILABLE"}, "a refused config must change nothing"
    assert grpc_predict(server, label="stable")[0] == 1
    if server.kind == "local":
        assert "Request to assign label to version 3 of model mura, which is not currently available" in server.log()
    restore(server, models)


@pytest.mark.local_only
def test_a_version_that_fails_to_load_is_reported_and_the_served_one_stays(server, models: Path) -> None:
    """TF Serving retries a failed load for minutes (max_num_load_retries) before it reports it: local only."""
    if server.kind != "local":
        pytest.skip("TF Serving retries the load for minutes first")
    broken = models / "other" / ".broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    broken.rename(models / "other" / "2")
    try:
        server.wait_until(lambda: states(server, "other").get(2) == "END", 60, "did not report version 2")
        code, body = server.http("GET", "/v1/models/other/versions/2")
        [status] = body["model_version_status"]
        assert code == 200 and status["status"]["error_code"] != "OK" and status["status"]["error_message"]
        assert states(server, "other")[1] == "AVAILABLE"
        assert rest_answer(server, "/v1/models/other:predict") == pytest.approx(0.9)
    finally:
        (models / "other" / "2" / "saved_model.pb").unlink()
        (models / "other" / "2").rmdir()


def test_labels_at_startup_need_the_flag_as_tf_serving_does(models: Path, tmp_path: Path) -> None:
    """Without --allow-version-labels-for-unavailable-models, no version is loaded yet when the first config's
    labels are checked: TF Serving refuses to start, and so does the project's server, with its message."""
    config = tmp_path / "models.config"
    write_config(config, *initial_config(models))
    with pytest.raises(ServingError) as refused:
        start(None, ServingConfig(grpc_port=0, rest_port=0, model_config_file=str(config)))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert re.fullmatch(
        r"Request to assign label to version [12] of model mura, which is not currently available for inference",
        str(refused.value),
    )
    server = start(
        None,
        ServingConfig(
            grpc_port=0, rest_port=0, model_config_file=str(config), allow_version_labels_for_unavailable_models=True
        ),
    )
    try:
        assert server.store.labels("mura") == {"stable": 1, "canary": 2}
        assert server.store.get("mura", label="canary").version == 2
    finally:
        server.stop()


def test_the_settings_write_tf_servings_config_with_policy_and_labels() -> None:
    text = tf_serving.models_config("mura", "/models/mura", "specific:3,4", ("stable=3", "canary=4"))
    [entry] = parse(text)
    assert (entry.name, entry.base_path, entry.labels) == ("mura", "/models/mura", {"stable": 3, "canary": 4})
    assert aspired_versions(entry.policy, [1, 2, 3, 4, 5]) == [4, 3]
    assert aspired_versions(policy_from_setting("latest:2"), [1, 2, 3]) == [3, 2]
    assert aspired_versions(policy_from_setting("all"), [2, 1]) == [2, 1]
    config = ServingConfig(model_config_file="/etc/models.config", allow_version_labels_for_unavailable_models=True)
    command = tf_serving.command("tms", config, "/etc/models.config", "/b", "/m")
    assert {"--model_config_file_poll_wait_seconds=5", "--rest_api_num_threads=64", "--grpc_max_threads=16"} <= set(
        command
    )
    assert {"--allow_version_labels_for_unavailable_models=true", "--monitoring_config_file=/m"} <= set(command)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model_config_list { config { name: "m" base_path: "relative" model_platform: "tensorflow" } }', "absolute"),
        (
            'model_config_list { config { name: "m" base_path: "/a" model_platform: "tensorflow" } '
            'config { name: "m" base_path: "/b" model_platform: "tensorflow" } }',
            "Illegal to list model m multiple times in config list",
        ),
        ('model_config_list { config { name: "m" base_path: "/a" } }', "Illegal setting neither"),
        ("model_config_list { config { name: 'm' base_path: '/a' nonsense: 1 } }", "cannot parse"),
    ],
)
def test_configs_tf_serving_refuses_are_refused_with_its_message(text: str, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        parse(text)
