"""Hand-made MURA-v1.1 trees for tests: rows are written exactly as given, files only where asked."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from mura.layout import DATASET_DIR, image_paths_csv, labeled_studies_csv


def png_bytes(width: int = 12, height: int = 9, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 12, height: int = 9, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="JPEG")
    return buffer.getvalue()


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dataset = root / DATASET_DIR
        self.dataset.mkdir(parents=True)
        self.rows: dict[str, list[str]] = {
            name: [] for split in ("train", "valid") for name in (image_paths_csv(split), labeled_studies_csv(split))
        }

    def study(self, folder: str, label: int | str, split: str = "train", raw: str | None = None) -> Tree:
        """`folder` below MURA-v1.1/, e.g. train/XR_HAND/patient00001/study1_positive."""
        self.rows[labeled_studies_csv(split)].append(raw if raw is not None else f"{DATASET_DIR}/{folder}/,{label}")
        return self

    def image(self, path: str, data: bytes | None = None, split: str = "train", raw: str | None = None) -> Tree:
        """`path` below MURA-v1.1/; its file is written unless `data` is b"" (missing) or the row is `raw`."""
        self.rows[image_paths_csv(split)].append(raw if raw is not None else f"{DATASET_DIR}/{path}")
        data = png_bytes() if data is None else data
        if data and raw is None:
            target = self.dataset / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return self

    def labeled_image(self, path: str, split: str = "train") -> Tree:
        """An image and its study row, both valid."""
        folder = path.rsplit("/", 1)[0]
        label = 1 if folder.endswith("_positive") else 0
        return self.study(folder, label, split).image(path, split=split)

    def write(self) -> Path:
        for name, rows in self.rows.items():
            (self.dataset / name).write_text("".join(f"{row}\n" for row in rows))
        return self.root
