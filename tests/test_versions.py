import os
from pathlib import Path

import pytest
import tensorflow as tf

from serving.versions import push, versions


def saved_model(tmp_path: Path) -> str:
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.f = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None], tf.float32)])
    path = str(tmp_path / "model")
    tf.saved_model.save(module, path)
    return path


def test_pushes_get_increasing_integer_versions_and_leave_no_staging(tmp_path: Path) -> None:
    source, target = saved_model(tmp_path), str(tmp_path / "serving" / "mura")
    assert versions(target) == []
    assert push(source, target) == 1
    assert push(source, target) == 2
    assert versions(target) == [1, 2]
    assert sorted(os.listdir(target)) == ["1", "2"]
    loaded = tf.saved_model.load(os.path.join(target, "2"))
    assert float(loaded.f(tf.constant([3.0]))[0]) == 6.0


def test_leftovers_and_other_files_are_not_versions(tmp_path: Path) -> None:
    target = tmp_path / "mura"
    (target / "3").mkdir(parents=True)
    (target / ".pushing-4-abc").mkdir()
    (target / "notes.txt").write_text("x")
    assert versions(str(target)) == [3]
    assert push(saved_model(tmp_path), str(target)) == 4


def test_pushing_something_that_is_not_a_saved_model_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        push(str(tmp_path), str(tmp_path / "serving"))
