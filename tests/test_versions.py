import os
from pathlib import Path

import pytest
import tensorflow as tf

from components.push import push
from mura.model_versions import served_version_of, versions
from mura.signatures import WARMUP_FILE


def saved_model(tmp_path: Path, scale: float = 2.0, name: str = "model") -> str:
    module = tf.Module()
    module.scale = tf.Variable(scale)
    module.f = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None], tf.float32)])
    path = str(tmp_path / name)
    tf.saved_model.save(module, path)
    return path


def test_pushes_get_increasing_integer_versions_and_leave_no_staging(tmp_path: Path) -> None:
    source, target = saved_model(tmp_path), str(tmp_path / "serving" / "mura")
    assert versions(target) == []
    assert push(source, target, "mura") == 1
    assert push(source, target, "mura") == 2
    assert versions(target) == [1, 2]
    assert sorted(os.listdir(target)) == ["1", "2"]
    assert tf.io.gfile.exists(os.path.join(target, "2", WARMUP_FILE))
    loaded = tf.saved_model.load(os.path.join(target, "2"))
    assert float(loaded.f(tf.constant([3.0]))[0]) == 6.0


def test_leftovers_and_other_files_are_not_versions(tmp_path: Path) -> None:
    target = tmp_path / "mura"
    (target / "3").mkdir(parents=True)
    (target / ".pushing-4-abc").mkdir()
    (target / "notes.txt").write_text("x")
    assert versions(str(target)) == [3]
    assert push(saved_model(tmp_path), str(target), "mura") == 4


def test_pushing_something_that_is_not_a_saved_model_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        push(str(tmp_path), str(tmp_path / "serving"), "mura")


def test_a_model_already_served_is_found_by_its_fingerprint(tmp_path: Path) -> None:
    first, second = saved_model(tmp_path, 2.0, "first"), saved_model(tmp_path, 3.0, "second")
    target = str(tmp_path / "serving" / "mura")
    assert served_version_of(first, target) is None
    push(first, target, "mura")
    push(second, target, "mura")
    assert served_version_of(first, target) == 1
    assert served_version_of(second, target) == 2
    assert served_version_of(saved_model(tmp_path, 4.0, "third"), target) is None


def test_a_pushed_version_carries_its_card_stamped_and_is_still_found_by_its_fingerprint(tmp_path: Path) -> None:
    """The card goes into assets.extra/, which neither TF Serving nor the fingerprint reads: a re-run still finds
    the model served, and pushes nothing."""
    from mura.model_card import CARD_DIR, CARD_HTML, read_card, to_json
    from tests.test_model_card import card

    source, target = saved_model(tmp_path), str(tmp_path / "serving" / "mura")
    candidate = card()
    assert push(source, target, "mura", candidate) == 1
    folder = os.path.join(target, "1", CARD_DIR)
    pushed = read_card(folder)
    assert pushed["model_details"]["version"] == {"name": "1", "pushed_to": os.path.join(target, "1")}
    assert to_json({**pushed, "model_details": candidate["model_details"]}) == to_json(candidate)  # only stamped
    assert "Model card: mura version 1" in (Path(folder) / CARD_HTML).read_text()
    assert served_version_of(source, target) == 1
    loaded = tf.saved_model.load(os.path.join(target, "1"))
    assert float(loaded.f(tf.constant([3.0]))[0]) == 6.0
