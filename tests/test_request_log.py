"""Request logging: a real server (both transports) on a small model whose answers are known logs each image of a
sampled request with what the request said about it; the log stays bounded, survives a torn file, and a log that
cannot be written never fails a request."""

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mura import features
from mura.config import ServingConfig
from mura.request_log import FILE_SUFFIX, LoggedImage, log_files, read_request_log
from serving.client import GrpcClient, RestClient
from serving.request_log import RequestLogger, request_images
from serving.server import start
from tests.small_models import export_study, flat_png, served

LEVELS = (25, 89, 153, 204)  # the study model's probability for a flat PNG is its gray level / 255


@pytest.fixture(scope="module")
def model_base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    return served(root, export_study(root / "export"))


def serve(model_base: Path, log_dir: Path, rate: float = 1.0, **config: object):
    """The project's server on free ports, logging to `log_dir`."""
    settings = ServingConfig(grpc_port=0, rest_port=0, poll_seconds=0.05, **config)
    return start(
        str(model_base),
        dataclasses.replace(settings, request_log_dir=str(log_dir), request_log_sampling_rate=rate),
    )


def test_every_image_of_a_sampled_request_is_logged_with_its_body_part_version_and_answer(model_base, tmp_path):
    server = serve(model_base, tmp_path / "log")
    try:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        rest.predict([flat_png(LEVELS[0]), flat_png(LEVELS[1])])  # serving_default: no body part
        with GrpcClient(f"127.0.0.1:{server.grpc_port}") as grpc_client:
            grpc_client.predict([flat_png(LEVELS[2])], body_parts=["XR_WRIST"])  # serving_body_part
        rest.predict_study([flat_png(LEVELS[3]), flat_png(LEVELS[0])], "XR_HAND")  # serving_study, scalar part
    finally:
        server.stop()
    log = read_request_log(str(tmp_path / "log"))
    assert (log.files, log.torn_files, log.unreadable_records) == (1, [], 0)
    got = [(image.image, image.body_part, image.signature_name) for image in log.images]
    assert got == [
        (flat_png(LEVELS[0]), "", "serving_default"),
        (flat_png(LEVELS[1]), "", "serving_default"),
        (flat_png(LEVELS[2]), "XR_WRIST", "serving_body_part"),
        (flat_png(LEVELS[3]), "XR_HAND", "serving_study"),
        (flat_png(LEVELS[0]), "XR_HAND", "serving_study"),
    ]
    expected = [LEVELS[0], LEVELS[1], LEVELS[2], LEVELS[3], LEVELS[0]]
    np.testing.assert_allclose([image.probability for image in log.images], np.array(expected) / 255, atol=1e-6)
    assert {(image.model_name, image.model_version) for image in log.images} == {("mura", 1)}
    assert all(image.logged_at > 0 for image in log.images)


def test_nothing_is_logged_at_rate_zero_and_about_half_at_one_half(model_base, tmp_path):
    server = serve(model_base, tmp_path / "none", rate=0.0)
    try:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        for _ in range(20):
            rest.predict([flat_png(LEVELS[0])])
    finally:
        server.stop()
    assert read_request_log(str(tmp_path / "none")).images == []

    logger = RequestLogger(str(tmp_path / "half"), 0.5, records_per_file=10, max_files=2, seed=1)
    sampled = sum(logger.sampled() for _ in range(2000))
    assert 900 < sampled < 1100  # binomial(2000, 0.5): 5 standard deviations either side


def test_the_log_is_bounded_keeps_the_newest_files_and_closes_the_old_ones(tmp_path):
    logger = RequestLogger(str(tmp_path), 1.0, records_per_file=7, max_files=3)
    fds = len(os.listdir("/proc/self/fd"))
    for index in range(3000):
        logger.log([LoggedImage(image=str(index).encode(), body_part="XR_HAND")])
    assert len(os.listdir("/proc/self/fd")) <= fds + 1  # the open file only
    logger.close()
    files = log_files(str(tmp_path))
    assert len(files) == 3
    kept = [int(image.image) for image in read_request_log(str(tmp_path)).images]
    assert kept == list(range(3000 - len(kept), 3000))  # the newest, in order
    assert 2 * 7 < len(kept) <= 3 * 7
    assert logger.logged == 3000 and logger.failed == 0


def test_a_torn_file_is_read_up_to_the_tear_and_junk_records_are_counted(tmp_path):
    logger = RequestLogger(str(tmp_path), 1.0, records_per_file=4, max_files=10)
    logger.log([LoggedImage(image=bytes([index]) * 50) for index in range(8)])
    logger.close()
    _, second = log_files(str(tmp_path))
    data = Path(second).read_bytes()
    Path(second).write_bytes(data[: len(data) - 30])  # the server died mid-record
    with tf.io.TFRecordWriter(str(tmp_path / f"requests-zzzz{FILE_SUFFIX}")) as writer:
        writer.write(b"\xff\xfe not a tf.Example")
        writer.write(tf.train.Example().SerializeToString())  # an example without an image
    (tmp_path / f"requests-zzzzz{FILE_SUFFIX}").write_bytes(os.urandom(300))  # not even a TFRecord
    log = read_request_log(str(tmp_path))
    assert [image.image[0] for image in log.images] == [0, 1, 2, 3, 4, 5, 6]
    assert log.torn_files == [second, str(tmp_path / f"requests-zzzzz{FILE_SUFFIX}")]
    assert log.unreadable_records == 2
    assert log.files == 4


def test_a_log_that_cannot_be_written_never_fails_a_request(model_base, tmp_path):
    log_dir = tmp_path / "log"
    server = serve(model_base, log_dir)
    try:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        rest.predict([flat_png(LEVELS[0])])
        for name in os.listdir(log_dir):
            os.remove(log_dir / name)
        log_dir.rmdir()
        log_dir.write_text("a file where the log folder was")
        server.predictor.request_log.records_per_file = 1  # the next image opens a new file, which must fail
        answers = [rest.predict([flat_png(LEVELS[1])])[0].probability for _ in range(3)]
    finally:
        server.stop()
    np.testing.assert_allclose(answers, [LEVELS[1] / 255] * 3, atol=1e-6)
    assert server.predictor.request_log.failed == 3


def test_examples_requests_give_each_image_its_own_body_part():
    def example(image: bytes, part: bytes | None) -> bytes:
        feature = {features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
        if part is not None:
            feature[features.BODY_PART] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[part]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    records = np.array([example(b"one", b"XR_ELBOW"), example(b"two", None)], dtype=object)
    assert request_images({"examples": tf.string}, {"examples": records}) == [(b"one", "XR_ELBOW"), (b"two", "")]
    with pytest.raises(ValueError, match="exactly one 'image'"):
        request_images({"examples": tf.string}, {"examples": np.array([example(b"", None)[:0]], dtype=object)})


def test_concurrent_requests_each_land_whole(model_base, tmp_path):
    server = serve(model_base, tmp_path / "log", request_log_records_per_file=5)
    try:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")

        def ask(level: int) -> None:
            for _ in range(10):
                rest.predict([flat_png(level), flat_png(level)], body_parts=["XR_FOREARM", "XR_FOREARM"])

        threads = [threading.Thread(target=ask, args=(level,)) for level in LEVELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    log = read_request_log(str(tmp_path / "log"))
    assert len(log.images) == 80 and not log.torn_files
    for image in log.images:
        level = np.frombuffer(tf.io.decode_png(image.image).numpy(), np.uint8)[0]
        assert image.probability == pytest.approx(level / 255, abs=1e-6)  # each image with its own answer
