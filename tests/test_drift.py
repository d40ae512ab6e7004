"""The drift check on what is served: synthetic requests look like the synthetic training data; inverted or resized
ones do not, and the check names the features that moved. End to end, a real server logs the requests and `mura
drift` compares them with the shared pipeline run's training split."""

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from click.testing import CliRunner
from google.protobuf import text_format
from PIL import Image, ImageOps

from analysis.drift import DriftCheckError, check_drift, training_images
from cli.drift import DRIFTED, NO_DRIFT
from cli.main import main
from mura.config import DriftConfig, ServingConfig
from mura.image_profile import GRID, image_profile
from mura.synthetic.dataset import write_sample
from serving.client import RestClient
from serving.server import start
from tests.conftest import TINY_SAMPLE

# The tests' data sets are small: fewer requests suffice to judge (the default, 200, is for real logs).
CONFIG = DriftConfig(min_requests=50)


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory) -> Path:
    """Another synthetic sample drawn like the training one (same generator and sizes, another seed): requests a
    server of that model would get."""
    root = tmp_path_factory.mktemp("fresh")
    write_sample(root, dataclasses.replace(TINY_SAMPLE, seed=8, studies_per_part=10), workers=1, progress=False)
    return root


def images_of(root: Path, split: str = "*") -> list[tuple[bytes, str]]:
    paths = sorted(root.glob(f"MURA-v1.1/{split}/*/*/*/*.png"))
    return [(path.read_bytes(), path.parts[-4]) for path in paths]


def altered(images: list[tuple[bytes, str]], change) -> list[tuple[bytes, str]]:
    out = []
    for data, part in images:
        buffer = io.BytesIO()
        change(Image.open(io.BytesIO(data))).save(buffer, format="PNG")
        out.append((buffer.getvalue(), part))
    return out


def inverted(image: Image.Image) -> Image.Image:
    return ImageOps.invert(image.convert("L"))


def tripled(image: Image.Image) -> Image.Image:
    return image.resize((image.width * 3, image.height * 3))


def test_an_image_is_described_by_its_size_channels_and_gray_levels():
    pixels = np.zeros((40, 20, 3), np.uint8)
    pixels[:20] = 200  # the top half bright
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    profile = image_profile(buffer.getvalue())
    assert (profile["height"], profile["width"], profile["channels"], profile["aspect_ratio"]) == (40, 20, 3, 2.0)
    assert profile["mean_intensity"] == pytest.approx(100, abs=1)
    assert profile["intensity_spread"] == pytest.approx(100, abs=1)
    assert len(profile["intensity"]) == GRID * GRID
    assert sorted(set(np.round(profile["intensity"]))) == [0, 200]
    with pytest.raises(ValueError):
        image_profile(b"not an image")


def test_synthetic_requests_do_not_drift_from_synthetic_training_data(sample_root, fresh_root):
    check = check_drift(images_of(fresh_root), images_of(sample_root, "train"), CONFIG)
    assert check.drifted == [], [row for row in check.features if row.drifted]
    compared = {row.feature for row in check.features}
    assert {"height", "width", "mean_intensity", "intensity", "channels", "body_part"} <= compared
    assert all(0 <= row.value < row.threshold for row in check.features)


def test_inverted_requests_drift_in_their_gray_levels_only(sample_root, fresh_root):
    check = check_drift(altered(images_of(fresh_root), inverted), images_of(sample_root, "train"), CONFIG)
    assert {"mean_intensity", "intensity"} <= set(check.drifted)
    assert not {"height", "width", "aspect_ratio", "body_part"} & set(check.drifted)
    assert "Jensen-Shannon" in check.anomalies["mean_intensity"]


def test_resized_requests_drift_in_their_size_only(sample_root, fresh_root):
    check = check_drift(altered(images_of(fresh_root), tripled), images_of(sample_root, "train"), CONFIG)
    assert {"height", "width"} <= set(check.drifted)
    assert not {"aspect_ratio", "mean_intensity", "body_part"} & set(check.drifted)


def test_a_new_body_part_and_a_shifted_mix_of_parts_are_named(sample_root, fresh_root):
    hands_only = [(data, "XR_HAND") for data, _ in images_of(fresh_root)]
    assert "body_part" in check_drift(hands_only, images_of(sample_root, "train"), CONFIG).drifted
    unknown = [(data, "XR_KNEE") for data, _ in images_of(fresh_root)]
    check = check_drift(unknown, images_of(sample_root, "train"), CONFIG)
    assert "body_part" in check.drifted


def test_requests_without_a_body_part_are_compared_on_the_rest(sample_root, fresh_root):
    anonymous = [(data, "") for data, _ in images_of(fresh_root)]
    check = check_drift(anonymous, images_of(sample_root, "train"), CONFIG)
    assert check.drifted == []
    assert "body_part" not in {row.feature for row in check.features}
    assert check.notes == ["body part: no logged request gave one, so it is not compared"]


def test_a_curated_schema_holds_the_thresholds(sample_root, fresh_root, tmp_path):
    served, trained = images_of(fresh_root), images_of(sample_root, "train")
    schema = check_drift(served, trained, CONFIG).schema
    tfdv.get_feature(schema, "height").skew_comparator.jensen_shannon_divergence.threshold = 0.001
    tfdv.write_schema_text(schema, str(tmp_path / "schema.pbtxt"))
    check = check_drift(served, trained, dataclasses.replace(CONFIG, schema_file=str(tmp_path / "schema.pbtxt")))
    assert check.drifted == ["height"]
    (tmp_path / "broken.pbtxt").write_text("feature { name: ")
    with pytest.raises(text_format.ParseError):
        check_drift(served, trained, dataclasses.replace(CONFIG, schema_file=str(tmp_path / "broken.pbtxt")))


def test_too_few_requests_or_undecodable_ones_are_refused_not_judged(sample_root, fresh_root):
    few = images_of(fresh_root)[: CONFIG.min_requests - 1] + [(b"\x89PNG torn", "XR_HAND")] * 5
    with pytest.raises(DriftCheckError, match=r"49 logged images decode \(5 do not\): at least 50"):
        check_drift(few, images_of(sample_root, "train"), CONFIG)


def test_the_training_sample_is_uniform_over_the_split(tmp_path):
    path = tmp_path / "Split-train"
    path.mkdir()
    with tf.io.TFRecordWriter(str(path / "data.gz"), options="GZIP") as writer:
        for index in range(1000):
            image = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(index).encode()]))
            writer.write(tf.train.Example(features=tf.train.Features(feature={"image": image})).SerializeToString())
    chosen = [int(data) for data, _ in training_images(str(path), 200)]
    assert len(set(chosen)) == 200
    assert np.mean(chosen) == pytest.approx(500, abs=60)  # the first 200 would average 100
    assert max(chosen) > 900
    assert [int(data) for data, _ in training_images(str(path), 5000)] == list(range(1000))


def log_requests(model_dir: str, log_dir: Path, images: list[tuple[bytes, str]]) -> None:
    """Asks a real server about `images` (their body parts given), logging every request."""
    config = ServingConfig(grpc_port=0, rest_port=0, request_log_dir=str(log_dir), request_log_sampling_rate=1.0)
    server = start(model_dir, config)
    try:
        client = RestClient(f"http://127.0.0.1:{server.rest_port}")
        for start_at in range(0, len(images), 8):
            batch = images[start_at : start_at + 8]
            client.predict([data for data, _ in batch], [part for _, part in batch])
    finally:
        server.stop()


def test_mura_drift_passes_on_served_synthetic_data_and_fails_naming_features(pipeline_run, fresh_root, tmp_path):
    run, _ = pipeline_run
    model_dir = str(Path(run.serving) / "mura")
    requests = images_of(fresh_root)
    cases = {"same": requests, "inverted": altered(requests, inverted), "resized": altered(requests, tripled)}
    results = {}
    for name, images in cases.items():
        log_requests(model_dir, tmp_path / name, images)
        command = ["drift", "--requests", str(tmp_path / name), "--pipeline-root", run.pipeline_root]
        command += ["--out", str(tmp_path / f"{name}-out"), "--min-requests", str(CONFIG.min_requests)]
        results[name] = CliRunner().invoke(main, command)
    same = results["same"]
    assert same.exit_code == NO_DRIFT, same.output + same.stderr
    assert f"{len(requests)} images in 1 files" in same.output
    assert "No drift" in same.output
    facts = json.loads((tmp_path / "same-out" / "drift.json").read_text())
    assert facts["served_images"] == len(requests) and facts["drifted"] == []
    page = (tmp_path / "same-out" / "drift.html").read_text()
    assert '<img src="drift.png"' in page and (tmp_path / "same-out" / "drift.png").stat().st_size > 10_000
    assert results["inverted"].exit_code == DRIFTED
    assert "Drifted: mean_intensity" in results["inverted"].stderr
    assert "Drifted: height" not in results["inverted"].stderr
    assert results["resized"].exit_code == DRIFTED
    assert "Drifted: height" in results["resized"].stderr and "Drifted: width" in results["resized"].stderr
    assert "drifted" in (tmp_path / "resized-out" / "drift.html").read_text()
