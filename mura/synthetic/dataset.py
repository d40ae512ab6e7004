"""Writes a synthetic data set in the exact MURA-v1.1 layout, with its four header-less CSVs and its quirks.

The real MURA cannot be shipped (users register with Stanford for it), so this is the embedded default data of
the demo and the tests. Quirks kept on purpose: no CSV header, the `MURA-v1.1/` prefix, a trailing slash on study
paths, several images per study and several studies for some patients, a few 3-channel PNGs among grayscale ones,
varied sizes with the longest side at most `max_side`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mura.config import SampleConfig
from mura.layout import (
    BODY_PARTS,
    DATASET_DIR,
    POSITIVE_RATE,
    SOURCE_SPLITS,
    StudyKey,
    write_csvs,
)
from mura.synthetic.render import plan_study, render_view

MANIFEST = "synthetic_manifest.csv"  # beside MURA-v1.1/: what each study really shows
IMAGES_PER_STUDY = (1, 2, 3, 4, 5)
IMAGES_PER_STUDY_WEIGHTS = (0.12, 0.3, 0.35, 0.15, 0.08)  # mean about 2.8, as in MURA
STUDIES_PER_PATIENT_WEIGHTS = (0.75, 0.2, 0.05)  # 1, 2 or 3 studies of the same part


@dataclass(frozen=True)
class StudySpec:
    split: str
    body_part: str
    patient_number: int
    study_number: int
    label: int
    images: int
    seed: tuple[int, ...]

    @property
    def key(self) -> StudyKey:
        patient = f"patient{self.patient_number:05d}"
        return StudyKey(self.split, self.body_part, patient, f"study{self.study_number}", self.label)

    @property
    def folder(self) -> str:
        return f"{DATASET_DIR}/{self.key.folder}"


def valid_studies_per_part(train_studies: int) -> int:
    return max(2, train_studies // 4)


def plan_dataset(config: SampleConfig) -> list[StudySpec]:
    """Decides every study's split, part, patient, label and image count, in MURA's CSV order."""
    rng = np.random.default_rng([config.seed, 0])
    specs: list[StudySpec] = []
    patient = 0
    for split_index, split in enumerate(SOURCE_SPLITS):
        count = config.studies_per_part if split == "train" else valid_studies_per_part(config.studies_per_part)
        for part_index, part in enumerate(BODY_PARTS):
            positives = round(count * POSITIVE_RATE[split][part])
            labels = rng.permutation([1] * positives + [0] * (count - positives))
            made = 0
            while made < count:
                patient += 1
                studies = min(count - made, int(rng.choice((1, 2, 3), p=STUDIES_PER_PATIENT_WEIGHTS)))
                for study_number in range(1, studies + 1):
                    specs.append(
                        StudySpec(
                            split=split,
                            body_part=part,
                            patient_number=patient,
                            study_number=study_number,
                            label=int(labels[made]),
                            images=int(rng.choice(IMAGES_PER_STUDY, p=IMAGES_PER_STUDY_WEIGHTS)),
                            seed=(config.seed, split_index, part_index, made),
                        )
                    )
                    made += 1
    return specs


def _image_size(rng: np.random.Generator, max_side: int) -> tuple[int, int]:
    longest = int(rng.integers(int(max_side * 0.55), max_side + 1))
    shortest = max(16, int(longest * rng.uniform(0.62, 1.0)))
    return (shortest, longest) if rng.random() < 0.75 else (longest, shortest)  # mostly portrait


def render_study(spec: StudySpec, root: str, max_side: int, rgb_fraction: float) -> tuple[str, int, str]:
    """Writes one study's PNGs; returns its folder, image count and finding, for the manifest."""
    rng = np.random.default_rng(spec.seed)
    plan = plan_study(spec.body_part, spec.label, rng)
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, spec.images + 1):
        width, height = _image_size(rng, max_side)
        pixels = render_view(plan, width, height, rng)
        image = Image.fromarray(pixels, mode="L")
        if rng.random() < rgb_fraction:
            image = image.convert("RGB")
        image.save(folder / f"image{index}.png", format="PNG")
    finding = plan.finding.kind if plan.finding else ("jewellery" if plan.jewellery else "none")
    return spec.folder, spec.images, finding


def write_sample(out: str | os.PathLike[str], config: SampleConfig, workers: int = 0, progress: bool = True) -> Path:
    """Renders the data set under `out`/MURA-v1.1 and returns that folder. `workers=0` uses every core."""
    out = Path(out)
    specs = plan_dataset(config)
    workers = workers or os.cpu_count() or 1
    bar = tqdm(
        total=sum(s.images for s in specs), desc="drawing radiographs", unit="img", disable=None if progress else True
    )
    findings: dict[str, str] = {}
    with bar:
        for folder, images, finding in _render_all(specs, str(out), config, workers):
            findings[folder] = finding
            bar.update(images)
    write_csvs(out / DATASET_DIR, [(s.key, s.images) for s in specs])
    with (out / MANIFEST).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_path", "label", "finding"])
        writer.writerows((f"{s.folder}/", s.label, findings[s.folder]) for s in specs)
    return out / DATASET_DIR


def _render_all(specs: list[StudySpec], out: str, config: SampleConfig, workers: int) -> Iterator[tuple[str, int, str]]:
    args = (out, config.max_side, config.rgb_fraction)
    if workers == 1 or len(specs) < 32:
        for spec in specs:
            yield render_study(spec, *args)
        return
    # spawn, not fork: callers may have TensorFlow loaded, whose threads do not survive a fork.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(render_study, specs, *([a] * len(specs) for a in args), chunksize=8)
