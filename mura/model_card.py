"""A model card for every candidate: what the model is for and not for, what it was trained on, how it did per body
part on the test studies (95 % intervals), the gate's thresholds and verdict, the baseline, the calibration and the
known failure modes; as JSON and as a page, written beside the pushed SavedModel (`assets.extra/`).

Made from the run's own outputs, not with Google's Model Card Toolkit: its newest release (2.0.0) requires
tensorflow-model-analysis < 0.42 and absl-py < 1.1, which TFX 1.16's locked stack cannot hold. The JSON keeps the
toolkit's top-level names (model_details, model_parameters, quantitative_analysis, considerations) so that its
users find their way; `gate` is this project's own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import jinja2
import tensorflow as tf

from mura.misreads import misreads_by_part
from mura.signatures import MODEL_FACTS_FILE
from mura.study_gate import GateDecision
from mura.study_metrics import STUDY_COLUMNS, ImagePrediction
from mura.tables import Column, html_table

CARD_JSON = "model_card.json"
CARD_HTML = "model_card.html"
CARD_DIR = os.path.dirname(MODEL_FACTS_FILE)  # in a SavedModel: assets.extra/, which TF Serving leaves alone
WORST_PER_KIND = 3  # the most confident misreads listed per body part and kind

MURA = "https://stanfordmlgroup.github.io/competitions/mura/"
INTENDED_USE = (
    "Research on abnormality detection in upper-extremity radiographs (MURA's seven body parts), and a worked "
    "example of a TFX pipeline with a promotion gate. It is not a medical device: it is not cleared or approved "
    "by any regulator, and no clinical decision may rest on its answers."
)
LIMITATIONS = (
    "Trained and evaluated only on the data named below (the synthetic MURA that mura sample draws holds "
    "schematic skeletons, not radiographs); its figures say nothing about another hospital's images.",
    "One verdict per image or study: abnormal or not. It does not locate, name or grade a finding.",
    "Only the seven upper-extremity body parts of MURA; another body part is judged at the global threshold.",
    "The intervals are over resamples of the test studies: they do not cover a shift of the population.",
)
CALIBRATION_COLUMNS: tuple[Column, ...] = (
    ("split", "split"),
    ("images", "images"),
    ("log loss before", "log_loss_before"),
    ("log loss after", "log_loss_after"),
    ("ECE before", "ece_before"),
    ("ECE after", "ece_after"),
)
OPERATING_POINT_COLUMNS: tuple[Column, ...] = (
    ("", "group"),
    ("threshold", "threshold"),
    ("eval studies", "studies"),
    ("abnormal", "abnormal_studies"),
    ("rule's measure", "value"),
    ("global threshold instead, because", "fell_back"),
)
TRAINING_COLUMNS: tuple[Column, ...] = (
    ("", "body_part"),
    ("normal images", "normal"),
    ("abnormal images", "abnormal"),
    ("images", "images"),
)
FAILURE_COLUMNS: tuple[Column, ...] = (
    ("", "body_part"),
    ("false negatives", "false_negatives"),
    ("of abnormal images", "abnormal_images"),
    ("false negative rate", "false_negative_rate"),
    ("false positives", "false_positives"),
    ("of normal images", "normal_images"),
    ("false positive rate", "false_positive_rate"),
)


@dataclass(frozen=True)
class TfmaGate:
    """TFMA's half of the gate, as the Evaluator left it."""

    blessed: bool
    thresholds: list[str]  # "overall: AUC at least 0.700", ...
    failures: list[str]  # empty when blessed


def calibration_summary(facts: dict) -> str:
    """The model's calibration method and its parameters in words, and why (from model_facts.json)."""
    calibration = facts["calibration"]
    chosen = calibration["chosen"]
    if chosen["method"] == "none":
        words = "none (the network's own probability)"
    elif chosen["method"] == "temperature":
        words = f"temperature scaling, T = {chosen['temperature']:.4g}"
    else:
        words = f"Platt scaling, sigmoid({chosen['slope']:.4g} * logit + {chosen['intercept']:.4g})"
    losses = ", ".join(f"{m} {v:.4f}" for m, v in calibration["cross_validated_log_loss"].items())
    why = f"; cross-validated eval log loss: {losses}" if losses else ""
    reason = f"; {calibration['reason']}" if calibration["reason"] else ""
    return f"{words} (setting {calibration['setting']!r}{why}{reason})"


def calibration_rows(facts: dict, study: dict) -> list[dict]:
    """Log loss and ECE before and after calibration: on eval (where it was fitted), on test (where it is judged)."""
    return [
        {
            "split": split,
            "images": measured.get("images", measured.get("eval_images")),
            **{f"{m}_{when}": measured[when][m] for m in ("log_loss", "ece") for when in ("before", "after")},
        }
        for split, measured in (("eval", facts["calibration"]), ("test", study["calibration"]))
    ]


def operating_point_rows(facts: dict) -> list[dict]:
    points = facts["operating_points"]
    return [points["overall"], *points["parts"]]


def training_rows(counts: Mapping[tuple[str, int], int]) -> list[dict]:
    """Images per body part and label ((body part, label) -> images), then the total."""
    parts = sorted({part for part, _ in counts})
    rows = [{"body_part": p, "normal": counts.get((p, 0), 0), "abnormal": counts.get((p, 1), 0)} for p in parts]
    rows.append({"body_part": "total", **{k: sum(r[k] for r in rows) for k in ("normal", "abnormal")}})
    return [{**row, "images": row["normal"] + row["abnormal"]} for row in rows]


def _rate(errors: int, of: int) -> float | None:
    return errors / of if of else None


def _worst(images: list[ImagePrediction]) -> list[dict]:
    return [{"source_path": i.source_path, "probability": i.probability, "threshold": i.threshold} for i in images]


def failure_modes(images: list[ImagePrediction], worst_per_kind: int = WORST_PER_KIND) -> list[dict]:
    """Per body part: the false negatives and positives on the evaluated images, at each image's threshold, their
    rates, and the most confident of each (the report draws the same with Grad-CAM)."""
    return [
        {
            "body_part": part.body_part,
            "false_negatives": len(part.false_negatives),
            "abnormal_images": part.abnormal_images,
            "false_negative_rate": _rate(len(part.false_negatives), part.abnormal_images),
            "false_positives": len(part.false_positives),
            "normal_images": part.normal_images,
            "false_positive_rate": _rate(len(part.false_positives), part.normal_images),
            "worst_false_negatives": _worst(part.false_negatives[:worst_per_kind]),
            "worst_false_positives": _worst(part.false_positives[:worst_per_kind]),
        }
        for part in misreads_by_part(images)
    ]


def _verdict(tfma: TfmaGate, study: GateDecision) -> str:
    refusals = [
        why for blessed, why in ((tfma.blessed, "TFMA's thresholds"), (study.blessed, study.reason())) if not blessed
    ]
    if refusals:
        return f"refused, not pushed: {'; '.join(refusals)}"
    return f"blessed by both evaluations ({study.reason()})"


def build_card(
    *,
    model_name: str,
    data_root: str,
    split_images: Mapping[str, int],
    train_counts: Mapping[tuple[str, int], int],
    study: dict,
    facts: dict,
    tfma: TfmaGate,
    served_version: int,
    images: list[ImagePrediction],
) -> dict:
    """The card of one candidate from the run's outputs: `split_images` (images per split, as ExampleGen counted
    them), `train_counts` ((body part, label) -> train images, Transform's count), `study` (study_metrics.json),
    `facts` (the model's model_facts.json), `served_version` (the baseline; 0 when nothing was served) and
    `images` (the study evaluation's image predictions)."""
    study_gate = GateDecision.from_report(study)
    return {
        "model_details": {
            "name": model_name,
            "overview": "A ResNet50V2 that scores an upper-extremity radiograph (PNG or JPEG) for abnormality; a "
            "study's probability is the mean of its images', judged at its body part's operating point.",
            "version": None,  # set when the model is pushed
            "references": [
                MURA,
                "Rajpurkar et al., MURA: Large Dataset for Abnormality Detection in "
                "Musculoskeletal Radiographs, arXiv:1712.06957",
            ],
        },
        "model_parameters": {
            "data": {
                "source": data_root,
                "images_per_split": dict(split_images),
                "train_images_per_body_part": training_rows(train_counts),
            },
            "input_format": "encoded PNG or JPEG bytes, any size, gray or colour; optionally the body part",
            "output_format": "the calibrated probability of abnormality, the verdict and the threshold applied",
        },
        "quantitative_analysis": {
            "split": study["split"],
            "confidence": study.get("confidence"),
            "bootstrap_samples": study.get("bootstrap_samples", 0),
            "performance_metrics": study["rows"],
            "calibration": {
                "summary": calibration_summary(facts),
                "chosen": facts["calibration"]["chosen"],
                "measured": calibration_rows(facts, study),
            },
            "operating_points": {"rule": facts["operating_points"]["rule"], "points": operating_point_rows(facts)},
        },
        "gate": {
            "verdict": _verdict(tfma, study_gate),
            "blessed": tfma.blessed and study_gate.blessed,
            "tfma": asdict(tfma),
            "study": {**study_gate.to_report(), "reason": study_gate.reason()},
            "baseline": {"served_version": served_version or None},
        },
        "considerations": {
            "intended_use": INTENDED_USE,
            "limitations": list(LIMITATIONS),
            "failure_modes": failure_modes(images),
        },
    }


def with_version(card: dict, version: int, pushed_to: str) -> dict:
    """The card of a pushed model: which version it became and where."""
    details = {**card["model_details"], "version": {"name": str(version), "pushed_to": pushed_to}}
    return {**card, "model_details": details}


def to_json(card: dict) -> str:
    return json.dumps(card, indent=2)


_PAGES = jinja2.Environment(loader=jinja2.PackageLoader("mura"), autoescape=True, trim_blocks=True, lstrip_blocks=True)


def to_html(card: dict) -> str:
    """The card as one self-contained page (templates/model_card.html.j2); every value read from the run is
    escaped."""
    analysis = card["quantitative_analysis"]
    return _PAGES.get_template("model_card.html.j2").render(
        card=card,
        training_table=html_table(card["model_parameters"]["data"]["train_images_per_body_part"], TRAINING_COLUMNS),
        study_table=html_table(analysis["performance_metrics"], STUDY_COLUMNS),
        calibration_table=html_table(analysis["calibration"]["measured"], CALIBRATION_COLUMNS),
        operating_point_table=html_table(analysis["operating_points"]["points"], OPERATING_POINT_COLUMNS),
        failure_table=html_table(card["considerations"]["failure_modes"], FAILURE_COLUMNS),
    )


def write_card(folder: str, card: dict) -> str:
    """model_card.json and model_card.html in `folder` (a local path or a URI); returns the page's path."""
    tf.io.gfile.makedirs(folder)
    for name, text in ((CARD_JSON, to_json(card)), (CARD_HTML, to_html(card))):
        with tf.io.gfile.GFile(os.path.join(folder, name), "w") as handle:
            handle.write(text)
    return os.path.join(folder, CARD_HTML)


def read_card(folder: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(folder, CARD_JSON)) as handle:
        return json.load(handle)
