"""The model's mistakes on the evaluated images, per body part: how many, and the most confident ones first.

Each image is judged at the threshold the model applied to it (its body part's operating point). The report draws
the worst with Grad-CAM; the model card lists them, with each part's error rates, as the known failure modes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mura.study_metrics import ImagePrediction

MISREAD_KINDS = ("false negatives", "false positives")
Misreads = dict[tuple[str, str], list[ImagePrediction]]  # (body part, kind) -> images, worst first


@dataclass(frozen=True)
class PartMisreads:
    body_part: str
    abnormal_images: int
    normal_images: int
    false_negatives: list[ImagePrediction]  # abnormal images at or below their threshold, lowest score first
    false_positives: list[ImagePrediction]  # normal images above their threshold, highest score first

    def of_kind(self, kind: str) -> list[ImagePrediction]:
        return self.false_negatives if kind == MISREAD_KINDS[0] else self.false_positives


def misreads_by_part(images: list[ImagePrediction]) -> list[PartMisreads]:
    """Every mistake of each body part (sorted by name), the most confident first."""
    found = []
    for part in sorted({i.body_part for i in images}):
        members = [i for i in images if i.body_part == part]
        abnormal = [i for i in members if i.label == 1]
        normal = [i for i in members if i.label == 0]
        found.append(
            PartMisreads(
                body_part=part,
                abnormal_images=len(abnormal),
                normal_images=len(normal),
                false_negatives=sorted(
                    (i for i in abnormal if i.probability <= i.threshold), key=lambda i: i.probability
                ),
                false_positives=sorted(
                    (i for i in normal if i.probability > i.threshold), key=lambda i: -i.probability
                ),
            )
        )
    return found


def misread(images: list[ImagePrediction], per_kind: int) -> Misreads:
    """The `per_kind` most confident mistakes per (body part, kind): abnormal images scored lowest, normal ones
    highest."""
    return {
        (part.body_part, kind): part.of_kind(kind)[:per_kind]
        for part in misreads_by_part(images)
        for kind in MISREAD_KINDS
    }
