"""Loss weights against class imbalance: sklearn's 'balanced' (the seed) or the MURA paper's per body part.

Both come out as one weight per (body part, label), applied as sample weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

Counts = Mapping[tuple[str, int], int]  # (body part, label) -> training images


def parse_label_counts(lines: list[str]) -> dict[tuple[str, int], int]:
    """Reads Transform's vocabulary with frequencies: '<count> <body part>:<label>' per line."""
    counts = {}
    for line in lines:
        if line.strip():
            count, key = line.split(maxsplit=1)
            part, label = key.strip().rsplit(":", 1)
            counts[(part, int(label))] = int(float(count))
    return counts


def balanced(counts: Counts) -> dict[tuple[str, int], float]:
    """sklearn's compute_class_weight('balanced') over labels, the same for every body part."""
    labels = np.array([0, 1])
    y = np.concatenate([np.full(n, label) for (_, label), n in counts.items()])
    weights = dict(zip(labels.tolist(), compute_class_weight("balanced", classes=labels, y=y), strict=True))
    return {key: float(weights[key[1]]) for key in counts}


def per_body_part(counts: Counts) -> dict[tuple[str, int], float]:
    """The MURA paper: w_T,1 = N_T / (A_T + N_T) and w_T,0 = A_T / (A_T + N_T) for body part T."""
    weights = {}
    for part in {p for p, _ in counts}:
        abnormal, normal = counts.get((part, 1), 0), counts.get((part, 0), 0)
        total = abnormal + normal
        weights[(part, 1)] = normal / total
        weights[(part, 0)] = abnormal / total
    return weights


def class_weights(counts: Counts, mode: str) -> dict[tuple[str, int], float]:
    modes = {"balanced": balanced, "per_body_part": per_body_part}
    if mode not in modes:
        raise ValueError(f"class weight mode must be one of {sorted(modes)}, got {mode!r}")
    if {label for _, label in counts} != {0, 1}:
        raise ValueError(f"class weights need both labels in the training data; counts are {dict(counts)}")
    return modes[mode](counts)
