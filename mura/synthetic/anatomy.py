"""Schematic skeletons per body part, in a unit frame (x right, y down), for the synthetic radiographs.

Each bone is a capsule from `start` to `end` with a shaft `width` and rounded ends (`head`), enough for a CNN to
see a long bone, a joint and a cortex, which is where the synthetic findings live.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Bone:
    start: tuple[float, float]
    end: tuple[float, float]
    width: float
    head: float  # radius of the rounded ends, relative to the frame
    long: bool = True  # a long bone can carry a fracture, plate or nail

    def jittered(self, rng: np.random.Generator, amount: float) -> Bone:
        shift = rng.normal(0.0, amount, size=4)
        return replace(
            self,
            start=(self.start[0] + shift[0], self.start[1] + shift[1]),
            end=(self.end[0] + shift[2], self.end[1] + shift[3]),
            width=self.width * rng.uniform(0.85, 1.15),
            head=self.head * rng.uniform(0.85, 1.15),
        )


def _chain(x0: float, y0: float, x1: float, y1: float, widths: tuple[float, ...], gap: float = 0.03) -> list[Bone]:
    """Phalanges or other bones laid end to end with a joint gap between them."""
    bones, n = [], len(widths)
    for i, width in enumerate(widths):
        a, b = i / n, (i + 1) / n
        start = (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a + (gap / 2 if i else 0.0))
        end = (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b - gap / 2)
        bones.append(Bone(start, end, width, width * 0.75))
    return bones


def _hand(wrist: bool) -> list[Bone]:
    bones: list[Bone] = []
    top = 0.45 if wrist else 0.0
    for i, x in enumerate((0.24, 0.38, 0.5, 0.62, 0.74)):
        base_y = 0.62 if not wrist else 0.55
        if i == 0:  # the thumb leaves at an angle
            bones += _chain(0.36, base_y, 0.12, base_y - 0.3, (0.055, 0.045))
            continue
        tip_y = top + (0.05 if i in (2, 3) else 0.1)
        if wrist:
            bones.append(Bone((x, base_y), (x + (x - 0.5) * 0.2, tip_y - 0.3), 0.05, 0.04))
        else:
            bones += _chain(x, base_y, x + (x - 0.5) * 0.35, tip_y, (0.055, 0.045, 0.038, 0.032))
    carpals = [(0.38 + 0.09 * (k % 4), 0.68 + 0.07 * (k // 4)) for k in range(8)]
    bones += [Bone((cx, cy), (cx + 0.01, cy + 0.02), 0.05, 0.04, long=False) for cx, cy in carpals]
    if wrist:
        bones += [
            Bone((0.42, 0.84), (0.44, 1.1), 0.11, 0.08),  # radius
            Bone((0.64, 0.86), (0.62, 1.1), 0.07, 0.05),  # ulna
        ]
    return bones


SKELETONS: dict[str, list[Bone]] = {
    "XR_HUMERUS": [
        Bone((0.5, 0.12), (0.5, 0.88), 0.11, 0.12),
        Bone((0.62, 0.02), (0.75, 0.1), 0.06, 0.06, long=False),  # acromion edge
    ],
    "XR_FOREARM": [
        Bone((0.4, 0.06), (0.44, 0.94), 0.075, 0.06),
        Bone((0.6, 0.06), (0.57, 0.94), 0.065, 0.055),
    ],
    "XR_ELBOW": [
        Bone((0.5, -0.05), (0.5, 0.45), 0.13, 0.12),
        Bone((0.44, 0.56), (0.32, 1.05), 0.08, 0.065),
        Bone((0.58, 0.54), (0.54, 1.05), 0.075, 0.07),
    ],
    "XR_FINGER": _chain(0.5, 0.04, 0.5, 0.96, (0.12, 0.1, 0.085)),
    "XR_HAND": _hand(wrist=False),
    "XR_WRIST": _hand(wrist=True),
    "XR_SHOULDER": [
        Bone((0.42, 0.45), (0.47, 1.05), 0.14, 0.17),  # humeral head and shaft
        Bone((0.15, 0.12), (0.9, 0.22), 0.06, 0.05),  # clavicle
        Bone((0.72, 0.35), (0.88, 0.85), 0.12, 0.08, long=False),  # scapula
    ],
}

# Soft tissue around the bones: a capsule this many times wider than each bone.
SOFT_TISSUE_SCALE = {
    "XR_HUMERUS": 3.6,
    "XR_FOREARM": 2.2,
    "XR_ELBOW": 2.6,
    "XR_FINGER": 2.0,
    "XR_HAND": 2.2,
    "XR_WRIST": 2.2,
    "XR_SHOULDER": 3.2,
}
