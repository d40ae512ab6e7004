"""The study signature (`serving_study`) served over REST and gRPC, and `mura predict --study` on it, against `mura
serve` running as its own process on a small model whose answers are known: an image's probability is its
brightness, a study's is the mean of its images', each body part has its own threshold."""

import base64
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import predict_pb2

from cli.main import main
from mura.layout import body_part_of_paths
from serving.client import GrpcClient, RestClient, StudyPrediction, ask_about_study
from tests.serve_process import ServeProcess
from tests.small_models import PART_THRESHOLDS, THRESHOLD, export_study, flat_png, one_version, served

MAX_PIXELS = 10_000
# Gray levels of each study's images. A's mean (0.4) is abnormal at the wrist's threshold and normal at the global
# one; D's (0.62) is abnormal at the global threshold and normal at the hand's.
STUDIES = {"A": (89, 115), "B": (204, 255, 229), "C": (25,), "D": (153, 178, 140, 166)}
PARTS = ("XR_WRIST", "XR_HAND", "", "XR_ELBOW")  # the last two: the model's global threshold
METRICS = "/monitoring/prometheus/metrics"
MURA = str(Path(sys.executable).parent / "mura")


def images(study: str) -> list[bytes]:
    return [flat_png(level) for level in STUDIES[study]]


def expected(study: str, body_part: str) -> StudyPrediction:
    """What the study model answers, from its definition: brightness, mean, the part's threshold."""
    probabilities = tuple(level / 255 for level in STUDIES[study])
    probability, threshold = float(np.mean(probabilities)), PART_THRESHOLDS.get(body_part, THRESHOLD)
    return StudyPrediction(probability, int(probability > threshold), threshold, probabilities)


def assert_answers(got: StudyPrediction, study: str, body_part: str) -> None:
    want = expected(study, body_part)
    assert got.probability == pytest.approx(want.probability, abs=1e-6)
    assert got.threshold == pytest.approx(want.threshold, abs=1e-6)
    assert got.abnormal == want.abnormal
    np.testing.assert_allclose(got.image_probabilities, want.image_probabilities, atol=1e-6)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def columnar(study_images: list[bytes], body_part: object) -> dict:
    return {
        "signature_name": "serving_study",
        "inputs": {"images": [b64(i) for i in study_images], "body_part": body_part},
    }


def grpc_request(study_images: list[bytes], body_part: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "mura", "serving_study"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(study_images, dtype=tf.string))
    request.inputs["body_part"].CopyFrom(tf.make_tensor_proto(body_part, dtype=tf.string))
    return request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """Batching on, with a batch timeout long enough that concurrent requests would share batches."""
    root = tmp_path_factory.mktemp("study")
    args = ["--model-base-path", str(served(root, export_study(root / "export")))]
    args += ["--max-batch-size", "32", "--batch-timeout-micros", "200000", "--max-image-pixels", str(MAX_PIXELS)]
    process = ServeProcess("local", args, root / "serve.log")
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def older_server(tmp_path_factory: pytest.TempPathFactory):
    """A model exported before the study signature: `serving_default` only, 0.25 for every image."""
    root = tmp_path_factory.mktemp("older")
    process = ServeProcess("local", ["--model-base-path", str(one_version(root, marker=0.25))], root / "serve.log")
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory: pytest.TempPathFactory):
    """A model whose `serving_study` fails as TF Serving with batching on refuses it (a scalar input)."""
    root = tmp_path_factory.mktemp("refusing")
    model = served(root, export_study(root / "export", refuse_study=True))
    process = ServeProcess("local", ["--model-base-path", str(model)], root / "serve.log")
    yield process
    assert process.stop() == 0, process.log()


def test_the_metadata_declares_the_study_signature_with_a_scalar_body_part(server) -> None:
    status, body = server.http("GET", "/v1/models/mura/metadata")
    study = body["metadata"]["signature_def"]["signature_def"]["serving_study"]
    assert status == 200 and study["method_name"] == "tensorflow/serving/predict"
    assert study["inputs"]["body_part"]["tensor_shape"] == {}  # a scalar: no dimension
    assert study["inputs"]["images"]["tensor_shape"]["dim"] == [{"size": "-1"}]
    assert set(study["outputs"]) == {"probability", "abnormal", "threshold", "image_probabilities"}
    with GrpcClient(server.grpc_target) as client:
        assert (
            client.signature_names()
            == RestClient(server.url).signature_names()
            == {
                "serving_default",
                "serving_body_part",
                "serving_study",
            }
        )


@pytest.mark.parametrize("body_part", PARTS)
@pytest.mark.parametrize("study", ["A", "D"])
def test_rest_columnar_request_answers_the_studys_mean_at_its_parts_threshold(server, study, body_part) -> None:
    status, body = server.http("POST", "/v1/models/mura:predict", columnar(images(study), body_part))
    assert status == 200, body
    outputs = body["outputs"]
    assert set(outputs) == {"probability", "abnormal", "threshold", "image_probabilities"}
    assert isinstance(outputs["probability"], float) and isinstance(outputs["abnormal"], int)  # scalars, not lists
    assert_answers(StudyPrediction(**outputs), study, body_part)
    assert_answers(RestClient(server.url).predict_study(images(study), body_part), study, body_part)


@pytest.mark.parametrize("body_part", PARTS)
def test_grpc_predict_answers_the_same_with_scalar_outputs(server, body_part) -> None:
    response = server.prediction().Predict(grpc_request(images("D"), body_part), timeout=60)
    assert response.model_spec.signature_name == "serving_study"
    shapes = {name: [d.size for d in tensor.tensor_shape.dim] for name, tensor in response.outputs.items()}
    assert shapes == {"probability": [], "abnormal": [], "threshold": [], "image_probabilities": [4]}
    outputs = {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}
    assert_answers(StudyPrediction(**outputs), "D", body_part)
    with GrpcClient(server.grpc_target) as client:
        assert_answers(client.predict_study(images("D"), body_part), "D", body_part)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (  # every instance names both inputs: body_part becomes [2], not the scalar the signature takes
            {
                "signature_name": "serving_study",
                "instances": [{"images": b64(i), "body_part": "XR_WRIST"} for i in images("A")],
            },
            "the row format ('instances') gives every named input the same 0-th dimension, one row per instance, but "
            "input 'body_part' of signature \"serving_study\" has shape []: send this request in the columnar format",
        ),
        (  # the body part once, beside the first image: the inputs' 0-th dimensions differ
            {
                "signature_name": "serving_study",
                "instances": [
                    {"images": b64(images("A")[0]), "body_part": "XR_WRIST"},
                    {"images": b64(images("A")[1])},
                ],
            },
            "Failed to process element: 1 of 'instances' list. JSON object with keys images keys must be equal to: "
            "body_part,images",
        ),
        (columnar(images("A"), ["XR_WRIST"]), "input 'body_part' must have shape [], got [1]"),
        (columnar([], "XR_WRIST"), "input 'images' must be a non-empty batch"),
    ],
)
def test_requests_that_do_not_fit_the_study_signature_get_a_400_and_the_server_keeps_serving(
    server, body, message
) -> None:
    status, answer = server.http("POST", "/v1/models/mura:predict", body)
    assert (status, list(answer)) == (400, ["error"])
    assert message in answer["error"]
    assert server.http("POST", "/v1/models/mura:predict", columnar(images("A"), "XR_WRIST"))[0] == 200


def test_a_grpc_body_part_that_is_not_a_scalar_is_invalid(server) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        server.prediction().Predict(grpc_request(images("A"), ["XR_WRIST", "XR_WRIST"]), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'body_part' must have shape [], got [2]" in raised.value.details()


def batching_counts(server: ServeProcess) -> tuple[float, float]:
    """(requests, batches) the batcher has run so far, from TF Serving's batching histograms."""
    page = server.text(METRICS)[2]

    def count(name: str) -> float:
        match = re.search(rf"^:tensorflow:serving:batching_session:{name}_count (\S+)$", page, re.MULTILINE)
        return float(match[1]) if match else 0.0

    return count("input_batch_size"), count("processed_batch_size")


def at_once(calls: list) -> list:
    """Every call started together (a barrier), so that a batcher would put them in one batch."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_studies_each_get_their_own_answer_while_batching_is_on(server) -> None:
    rest, requests, before = RestClient(server.url), [], batching_counts(server)
    with GrpcClient(server.grpc_target) as over_grpc:
        for turn in range(3):
            for index, study in enumerate(STUDIES):
                client, part = (rest, over_grpc)[(turn + index) % 2], PARTS[(turn + index) % len(PARTS)]
                requests.append((study, part, lambda c=client, s=study, p=part: c.predict_study(images(s), p)))
        answers = at_once([call for _, _, call in requests])
    for (study, part, _), answer in zip(requests, answers, strict=True):
        assert_answers(answer, study, part)
    assert batching_counts(server) == before, "a study request went through the batcher"

    # The control: the same server does batch concurrent requests to serving_default.
    singles = at_once([lambda level=level: rest.predict([flat_png(level)]) for level in range(10, 250, 30)])
    assert [round(answer.probability * 255) for [answer] in singles] == list(range(10, 250, 30))
    requests_batched, batches = (after - then for after, then in zip(batching_counts(server), before, strict=True))
    assert requests_batched == len(singles) and batches < len(singles)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (flat_png(128, size=(200, 100)), f"image 1 is 200x100 = 20000 pixels, more than the limit of {MAX_PIXELS}"),
        (b"plain text, not an image", "image 1:"),
    ],
)
def test_the_image_checks_apply_to_a_studys_images(server, bad: bytes, message: str) -> None:
    study = [images("A")[0], bad]
    status, answer = server.http("POST", "/v1/models/mura:predict", columnar(study, "XR_WRIST"))
    assert status == 400 and message in answer["error"]
    with pytest.raises(grpc.RpcError) as raised:
        server.prediction().Predict(grpc_request(study, "XR_WRIST"), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in raised.value.details()


def study_files(folder: Path, study: str) -> list[str]:
    folder.mkdir(parents=True)
    paths = [folder / f"image{index}.png" for index in range(1, len(STUDIES[study]) + 1)]
    for path, image in zip(paths, images(study), strict=True):
        path.write_bytes(image)
    return [str(path) for path in paths]


def mura_predict(*args: str) -> str:
    result = subprocess.run([MURA, "predict", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_printed(stdout: str, paths: list[str], study: str, body_part: str, whose: str) -> None:
    """Each image's probability on its row, then the study's line: the mean, the verdict and the threshold."""
    want = expected(study, body_part)
    for path, probability in zip(paths, want.image_probabilities, strict=True):
        assert f"{probability:.3f}" in next(row for row in stdout.splitlines() if row.startswith(path))
    verdict = "abnormal" if want.abnormal else "normal"
    assert (
        f"Study of {len(paths)} images ({body_part}): mean probability {want.probability:.3f} -> {verdict} "
        f"({whose}: {want.threshold:g})"
    ) in stdout


def test_mura_predict_study_asks_the_study_signature_with_the_body_part(server, tmp_path: Path) -> None:
    # Both studies get another verdict at their part's threshold than at the global one: the verdict shows which
    # threshold the server applied.
    assert expected("A", "XR_WRIST").abnormal != expected("A", "").abnormal
    assert expected("D", "XR_HAND").abnormal != expected("D", "").abnormal
    paths = study_files(tmp_path / "a", "A")
    stdout = mura_predict(*paths, "--study", "--body-part", "XR_WRIST", "--url", server.url)
    assert_printed(stdout, paths, "A", "XR_WRIST", "XR_WRIST's threshold")
    assert "no study signature" not in stdout

    # No --body-part: the part is read from a MURA-shaped path, here over gRPC.
    paths = study_files(tmp_path / "MURA-v1.1" / "valid" / "XR_HAND" / "patient11186" / "study1_positive", "D")
    stdout = mura_predict(*paths, "--study", "--grpc", server.grpc_target)
    assert_printed(stdout, paths, "D", "XR_HAND", "XR_HAND's threshold")


def test_an_older_model_without_the_study_signature_gets_the_mean_computed_by_the_client(
    older_server, tmp_path: Path
) -> None:
    paths = study_files(tmp_path / "XR_WRIST" / "study1", "A")
    stdout = mura_predict(*paths, "--study", "--url", older_server.url)
    note = [line for line in stdout.splitlines() if "no study signature" in line]
    assert len(note) == 1 and "an older model" in note[0]
    assert "Study of 2 images (XR_WRIST): mean probability 0.250 -> normal (the model's threshold: 0.5)" in stdout
    with GrpcClient(older_server.grpc_target) as client:
        answer, note, per_part = ask_about_study(client, images("B"), "XR_WRIST")
    assert "an older model" in note and not per_part
    assert answer == StudyPrediction(0.25, 0, 0.5, (0.25, 0.25, 0.25))


def test_the_body_part_comes_from_mura_folders_and_must_be_one(tmp_path: Path) -> None:
    assert body_part_of_paths(["MURA-v1.1/valid/XR_WRIST/patient1/study1_positive/image1.png"]) == "XR_WRIST"
    assert body_part_of_paths(["scans/XR_WRISTS/a.png", "b.png"]) is None  # only a folder named as MURA names it
    with pytest.raises(ValueError, match="several body parts"):
        body_part_of_paths(["x/XR_HAND/a.png", "x/XR_WRIST/b.png"])
    hand, wrist = study_files(tmp_path / "XR_HAND", "C")[0], study_files(tmp_path / "XR_WRIST", "C")[0]
    result = CliRunner().invoke(main, ["predict", hand, wrist, "--study"])
    assert result.exit_code == 2 and "several body parts (XR_HAND, XR_WRIST)" in result.output
    result = CliRunner().invoke(main, ["predict", hand, "--body-part", "XR_HAND"])
    assert result.exit_code == 2 and "--body-part goes with --study" in result.output


def test_a_refused_study_signature_falls_back_to_the_body_part_signature_and_the_parts_threshold(
    refusing_server, tmp_path: Path
) -> None:
    # Study A is abnormal at the wrist's threshold and normal at the global one: the fallback must use the part's.
    want = expected("A", "XR_WRIST")
    assert want.abnormal != expected("A", "").abnormal
    paths = study_files(tmp_path / "a", "A")
    stdout = mura_predict(*paths, "--study", "--body-part", "XR_WRIST", "--url", refusing_server.url)
    note = [line for line in stdout.splitlines() if "refused the study signature" in line]
    assert len(note) == 1 and "(400)" in note[0] and "its body part" in note[0]
    assert_printed(stdout, paths, "A", "XR_WRIST", "XR_WRIST's threshold")
    with GrpcClient(refusing_server.grpc_target) as client:
        answer, note, per_part = ask_about_study(client, images("A"), "XR_WRIST")
    assert per_part and "refused the study signature" in note
    assert answer.abnormal == want.abnormal
    assert (answer.threshold, answer.probability) == pytest.approx((want.threshold, want.probability))
