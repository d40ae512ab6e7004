"""Patient-level assignment of images to the pipeline's splits, so no patient is seen in two of them."""

from __future__ import annotations

import hashlib

PIPELINE_SPLITS = ("train", "eval", "test")


def patient_bucket(patient_id: str, salt: str) -> float:
    """A stable number in [0, 1) per patient: the same on every machine, run and Python version."""
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pipeline_split(source_split: str, patient_id: str, eval_fraction: float, salt: str) -> str:
    """MURA's `valid` is the test set (its test set was never released); eval is carved out of `train`."""
    if source_split == "valid":
        return "test"
    return "eval" if patient_bucket(patient_id, salt) < eval_fraction else "train"
