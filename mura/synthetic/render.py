"""Draws one radiograph-like picture: soft tissue and bones on a dark field, a finding, distractors, noise.

Abnormal studies carry one finding (fracture, plate, nail, cast or lytic lesion) on one long bone; normal studies
carry distractors a shortcut-seeking model could latch on to (side markers, text, metal jewellery, bright
collimation edges). All randomness comes from the generators passed in, so a seed reproduces every pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mura.synthetic.anatomy import SKELETONS, SOFT_TISSUE_SCALE, Bone

FINDINGS = ("fracture", "plate", "nail", "cast", "lesion")
FINDING_WEIGHTS = (0.4, 0.15, 0.1, 0.15, 0.2)


@dataclass(frozen=True)
class Finding:
    kind: str  # one of FINDINGS
    bone: int  # index into the skeleton
    position: float  # along the bone, 0 = start, 1 = end
    angle: float  # degrees off perpendicular, for fracture lines
    severity: float  # 0..1: how visible it is
    side: int  # +1/-1: which side of the bone a plate sits on, which way a fracture shifts


@dataclass(frozen=True)
class StudyPlan:
    """Everything random about a study that all its views share."""

    body_part: str
    label: int
    finding: Finding | None
    skeleton: tuple[Bone, ...]
    mirrored: bool  # left or right limb
    jewellery: bool


def plan_study(body_part: str, label: int, rng: np.random.Generator) -> StudyPlan:
    skeleton = tuple(bone.jittered(rng, 0.012) for bone in SKELETONS[body_part])
    finding = None
    if label:
        long_bones = [i for i, bone in enumerate(skeleton) if bone.long]
        finding = Finding(
            kind=str(rng.choice(FINDINGS, p=FINDING_WEIGHTS)),
            bone=int(rng.choice(long_bones)),
            position=float(rng.uniform(0.3, 0.7)),
            angle=float(rng.uniform(-35, 35)),
            severity=float(rng.uniform(0.45, 1.0)),
            side=int(rng.choice((-1, 1))),
        )
    jewellery = not label and rng.random() < 0.1
    return StudyPlan(body_part, label, finding, skeleton, bool(rng.random() < 0.5), jewellery)


class _View:
    """Maps the skeleton's unit frame to pixels for one view: rotation, zoom, shift, mirroring."""

    def __init__(self, width: int, height: int, mirrored: bool, rng: np.random.Generator) -> None:
        self.width, self.height = width, height
        self.scale = max(width, height) * rng.uniform(0.78, 1.0)
        theta = math.radians(rng.normal(0.0, 10.0) + rng.choice((0.0, 0.0, 20.0, -20.0)))
        self.cos, self.sin = math.cos(theta), math.sin(theta)
        self.shift = rng.normal(0.0, 0.04, size=2)
        self.mirror = -1.0 if mirrored else 1.0

    def point(self, p: tuple[float, float]) -> tuple[float, float]:
        x, y = (p[0] - 0.5) * self.mirror + self.shift[0], p[1] - 0.5 + self.shift[1]
        xr, yr = x * self.cos - y * self.sin, x * self.sin + y * self.cos
        return (self.width / 2 + xr * self.scale, self.height / 2 + yr * self.scale)

    def length(self, unit: float) -> float:
        return unit * self.scale


class _Layer:
    """A grey mask drawn with PIL, blurred, then blended into the float canvas."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.image = Image.new("L", size, 0)
        self.draw = ImageDraw.Draw(self.image)

    def capsule(self, a: tuple[float, float], b: tuple[float, float], width: float, head: float = 0.0) -> None:
        self.draw.line([a, b], fill=255, width=max(1, round(width)))
        for x, y in (a, b):
            r = max(head, width / 2)
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=255)

    def mask(self, blur: float) -> np.ndarray:
        image = self.image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else self.image
        return np.asarray(image, dtype=np.float32) / 255.0


def _length(bone: Bone) -> float:
    (x0, y0), (x1, y1) = bone.start, bone.end
    return math.hypot(x1 - x0, y1 - y0) or 1e-6


def _along(bone: Bone, t: float, offset: float = 0.0) -> tuple[float, float]:
    """A point at fraction t along the bone's axis, `offset` (unit frame) to its side."""
    (x0, y0), (x1, y1) = bone.start, bone.end
    length = _length(bone)
    nx, ny = -(y1 - y0) / length, (x1 - x0) / length
    return (x0 + (x1 - x0) * t + nx * offset, y0 + (y1 - y0) * t + ny * offset)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    coarse = rng.normal(0.0, 1.0, size=(max(2, size[1] // cell), max(2, size[0] // cell))).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize(size, Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def render_view(plan: StudyPlan, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """One grayscale view of the study, as uint8 pixels of shape (height, width)."""
    size = (width, height)
    px = max(width, height) / 512.0  # 1 at MURA's usual resolution
    view = _View(width, height, plan.mirrored, rng)
    finding = plan.finding
    severity = finding.severity * rng.uniform(0.7, 1.0) if finding else 0.0

    background = rng.uniform(5, 35)
    gradient = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :] * rng.uniform(-12, 12)
    canvas = np.full((height, width), background, dtype=np.float32) + gradient

    tissue, cortex, marrow = _Layer(size), _Layer(size), _Layer(size)
    for index, bone in enumerate(plan.skeleton):
        pieces = [(bone.start, bone.end)]
        if finding and finding.kind == "fracture" and finding.bone == index:
            shift = finding.side * (0.25 + 0.35 * severity) * bone.width  # displacement of the distal fragment
            pieces = [
                (bone.start, _along(bone, finding.position)),
                (_along(bone, finding.position, shift), _along(bone, 1.0, shift)),
            ]
        for start, end in pieces:
            a, b = view.point(start), view.point(end)
            tissue.capsule(a, b, view.length(bone.width * SOFT_TISSUE_SCALE[plan.body_part]))
            cortex.capsule(a, b, view.length(bone.width), view.length(bone.head) if bone.long else 0.0)
            marrow.capsule(a, b, view.length(bone.width * 0.5))
        if not bone.long:
            a, b = view.point(bone.start), view.point(bone.end)
            cortex.capsule(a, b, view.length(bone.width), view.length(bone.head))

    tissue_level = rng.uniform(50, 90)
    canvas += tissue.mask(12 * px) * (tissue_level - background)
    bone_gain = rng.uniform(60, 95)  # bone stays well below metal, which saturates
    trabecular = 1.0 + 0.12 * _smooth_noise(rng, size, max(2, round(6 * px)))
    cortex_mask = cortex.mask(1.0 * px)
    canvas += cortex_mask * bone_gain * trabecular - marrow.mask(2.0 * px) * bone_gain * 0.35

    if finding:
        canvas = _draw_finding(canvas, plan, finding, severity, view, tissue_level, rng, px)
    if plan.jewellery:
        canvas = _draw_jewellery(canvas, plan, view, rng)
    canvas = _draw_distractors(canvas, rng, px)

    gamma = rng.uniform(0.8, 1.25)
    canvas = 255.0 * (np.clip(canvas, 0, 255) / 255.0) ** gamma
    canvas += rng.normal(0.0, rng.uniform(2.0, 7.0), size=canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _blend(canvas: np.ndarray, mask: np.ndarray, value: float) -> np.ndarray:
    return canvas * (1.0 - mask) + value * mask


def _draw_finding(
    canvas: np.ndarray,
    plan: StudyPlan,
    finding: Finding,
    severity: float,
    view: _View,
    tissue_level: float,
    rng: np.random.Generator,
    px: float,
) -> np.ndarray:
    bone = plan.skeleton[finding.bone]
    size = (canvas.shape[1], canvas.shape[0])
    layer = _Layer(size)
    t = finding.position
    if finding.kind == "fracture":
        # A lucent line across the cortex, oblique by `angle`, through the cut drawn with the bone.
        half = bone.width * 0.75
        tilt = math.tan(math.radians(finding.angle)) * half / _length(bone)
        a = view.point(_along(bone, t - tilt, -half))
        b = view.point(_along(bone, t + tilt, half))
        gap = view.length(bone.width * (0.2 + 0.2 * severity))  # wide enough to survive downscaling
        layer.draw.line([a, b], fill=255, width=max(1, round(gap)))
        return _blend(canvas, layer.mask(0.6 * px) * (0.7 + 0.3 * severity), tissue_level)
    if finding.kind == "plate":
        offset = finding.side * bone.width * 0.55
        a, b = view.point(_along(bone, t - 0.25, offset)), view.point(_along(bone, t + 0.25, offset))
        layer.capsule(a, b, view.length(bone.width * 0.4))
        for k in range(int(rng.integers(3, 7))):
            s = t - 0.22 + 0.44 * k / 5
            ends = view.point(_along(bone, s, offset * 1.1)), view.point(_along(bone, s, -offset * 1.1))
            layer.capsule(*ends, view.length(bone.width * 0.15))
        return _blend(canvas, layer.mask(0.5 * px), rng.uniform(235, 255))
    if finding.kind == "nail":
        layer.capsule(view.point(_along(bone, 0.08)), view.point(_along(bone, 0.92)), view.length(bone.width * 0.32))
        for s in (0.15, 0.85):
            half = bone.width * 0.6
            layer.capsule(view.point(_along(bone, s, -half)), view.point(_along(bone, s, half)), 2.0 * px)
        return _blend(canvas, layer.mask(0.5 * px), rng.uniform(235, 255))
    if finding.kind == "cast":
        half = bone.width * SOFT_TISSUE_SCALE[plan.body_part] * 0.7
        a, b = view.point(_along(bone, max(0.0, t - 0.35))), view.point(_along(bone, min(1.0, t + 0.35)))
        layer.capsule(a, b, view.length(2 * half))
        weave = 0.85 + 0.15 * np.sign(np.sin(np.arange(canvas.shape[1]) * 0.9 / px))[None, :]
        return canvas + layer.mask(3 * px) * rng.uniform(55, 85) * (0.6 + 0.4 * severity) * weave
    # lesion: a lytic (dark) focus with a sclerotic rim inside the bone
    centre = view.point(_along(bone, t, finding.side * bone.width * 0.1))
    radius = view.length(bone.width * (0.35 + 0.15 * severity))
    rim = _Layer(size)
    rim.draw.ellipse(
        [centre[0] - radius * 1.35, centre[1] - radius * 1.35, centre[0] + radius * 1.35, centre[1] + radius * 1.35],
        fill=255,
    )
    layer.draw.ellipse([centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=255)
    canvas = canvas + rim.mask(1.5 * px) * 30 * severity
    return _blend(canvas, layer.mask(1.5 * px) * (0.75 + 0.25 * severity), tissue_level)


def _draw_jewellery(canvas: np.ndarray, plan: StudyPlan, view: _View, rng: np.random.Generator) -> np.ndarray:
    """Metal on a normal study (a ring, a snap button): bright like hardware, but no finding."""
    bone = plan.skeleton[int(rng.integers(len(plan.skeleton)))]
    layer = _Layer((canvas.shape[1], canvas.shape[0]))
    x, y = view.point(_along(bone, rng.uniform(0.2, 0.8), bone.width * rng.uniform(0.8, 1.4)))
    r = view.length(bone.width * 0.35)
    layer.draw.ellipse([x - r, y - r, x + r, y + r], outline=255, width=max(2, round(r / 3)))
    return _blend(canvas, layer.mask(0.5), rng.uniform(230, 255))


def _draw_distractors(canvas: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    """Side markers, view labels and bright collimation edges: present on normal and abnormal alike."""
    height, width = canvas.shape
    layer = _Layer((width, height))
    if rng.random() < 0.55:
        box = round(rng.uniform(22, 34) * px)
        x = round(rng.uniform(0.03, 0.12) * width) if rng.random() < 0.5 else round(rng.uniform(0.8, 0.9) * width)
        y = round(rng.uniform(0.03, 0.12) * height)
        layer.draw.rectangle([x, y, x + box, y + box], outline=255, width=max(1, round(2 * px)))
        font = ImageFont.load_default(size=max(6, round(box * 0.75)))
        layer.draw.text((x + box * 0.2, y + box * 0.05), str(rng.choice(["L", "R"])), fill=255, font=font)
    if rng.random() < 0.35:
        font = ImageFont.load_default(size=max(6, round(rng.uniform(12, 20) * px)))
        text = f"{rng.choice(['PA', 'LAT', 'OBL', 'AP'])} {int(rng.integers(1, 99)):02d}"
        layer.draw.text((rng.uniform(0.05, 0.5) * width, rng.uniform(0.85, 0.92) * height), text, fill=255, font=font)
    canvas = _blend(canvas, layer.mask(0.4), rng.uniform(200, 250))
    if rng.random() < 0.25:  # unexposed film outside the collimator reads bright
        edge = round(rng.uniform(0.04, 0.12) * width)
        level = rng.uniform(150, 230)
        if rng.random() < 0.5:
            canvas[:, :edge] = level
        else:
            canvas[:, width - edge :] = level
    return canvas
