from collections import defaultdict

from mura.config import DataConfig
from mura.reader import read_mura
from mura.splits import patient_bucket, pipeline_split


def test_valid_is_test_and_eval_comes_from_train() -> None:
    assert pipeline_split("valid", "patient00001", 0.5, "s") == "test"
    splits = {pipeline_split("train", f"patient{n:05d}", 0.2, "s") for n in range(200)}
    assert splits == {"train", "eval"}


def test_the_eval_share_and_salt() -> None:
    patients = [f"patient{n:05d}" for n in range(5000)]
    share = sum(pipeline_split("train", p, 0.1, "mura-eval") == "eval" for p in patients) / len(patients)
    assert 0.09 < share < 0.11
    assert pipeline_split("train", "patient00001", 0.0, "mura-eval") == "train"
    assert [patient_bucket(p, "a") for p in patients[:20]] != [patient_bucket(p, "b") for p in patients[:20]]
    assert patient_bucket("patient00042", "a") == patient_bucket("patient00042", "a")


def test_no_patient_is_in_two_splits_of_a_sample(sample_root) -> None:
    index = read_mura(sample_root, DataConfig(eval_fraction=0.3), progress=False)
    splits_of = defaultdict(set)
    for record in index.images:
        splits_of[record.patient_id].add(record.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {r.split for r in index.images} == {"train", "eval", "test"}
