"""Reads a MURA-v1.1 root from its four header-less CSVs: every row is accepted or rejected with a reason.

File lists come from the CSVs, never from listing folders (archives carry `.DS_Store` and `._*` files), and a
path that leads outside the data root is rejected without being opened. CSV lines are split from the bytes here,
not by the csv module, so a line that is not UTF-8, holds a NUL byte or never ends is one rejected row, not a crash.
"""

from __future__ import annotations

import csv
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from mura.config import DataConfig
from mura.filesystem import FileSystem, absolute, filesystem_for, is_within
from mura.image_header import ImageHeader, ImageHeaderError, check_complete, read_image_header
from mura.layout import (
    BODY_PARTS,
    DATASET_DIR,
    IMAGE_PATH,
    SOURCE_SPLITS,
    STUDY_PATH,
    StudyKey,
    image_paths_csv,
    labeled_studies_csv,
    parse_study,
)
from mura.splits import pipeline_split

# Why a row was rejected; the codes appear in rejected-row reports.
REASONS = {
    "malformed_row": (
        "the CSV line is not valid UTF-8, holds a NUL byte, is longer than 64 KiB, or does not have the expected "
        "columns or label"
    ),
    "outside_root": "the path is absolute, climbs with '..' or resolves outside the data root; never opened",
    "bad_prefix": f"the path does not start with '{DATASET_DIR}/'",
    "malformed_path": "the path does not follow SPLIT/XR_PART/patientN/studyK_(positive|negative)/imageN.png",
    "wrong_split": "the path names a split other than the CSV's",
    "unknown_body_part": f"the body part folder is none of {', '.join(BODY_PARTS)}",
    "duplicate_row": "the same path appears in an earlier row",
    "unlabeled_study": "the image's study has no row in the labeled-studies CSV",
    "label_mismatch": "the labeled-studies CSV disagrees with the study folder's _positive/_negative suffix",
    "patient_in_both_splits": "the patient also appears in the train split; kept out of the test split",
    "study_without_images": "the study has a label row but no image rows",
    "missing_file": "no regular file at the path",
    "unreadable": "the file could not be read",
    "not_png_or_jpeg": "the bytes are neither PNG nor JPEG",
    "corrupt_image": (
        "the PNG/JPEG header is truncated or invalid, or the file is cut short: a PNG not ending with its IEND chunk, "
        "a JPEG not ending with its EOI marker"
    ),
    "undecodable": "the header reads but the pixels do not decode, or decode to another size (found at ingestion)",
}


class MuraLayoutError(Exception):
    """The data root is not a MURA-v1.1 release at all (as opposed to one with some bad rows)."""


@dataclass(frozen=True)
class ImageRecord:
    path: str  # absolute path or URI
    source_path: str  # as in the CSV, relative to the folder that holds MURA-v1.1
    source_split: str  # MURA's split: train or valid
    split: str  # the pipeline's split: train, eval or test
    body_part: str
    patient_id: str
    study_id: str  # unique across body parts, e.g. XR_WRIST/patient11185/study1
    image_index: int
    label: int  # 1 = abnormal
    format: str
    height: int
    width: int
    channels: int
    csv_line: int  # the row in {source_split}_image_paths.csv


@dataclass(frozen=True)
class Rejection:
    csv_file: str
    line: int
    path: str  # the CSV's path column as written
    reason: str  # a key of REASONS
    detail: str = ""
    body_part: str = ""  # when the path names one

    @property
    def source_split(self) -> str:
        return self.csv_file.split("_", 1)[0]

    @property
    def is_image_row(self) -> bool:
        return self.csv_file.endswith("_image_paths.csv")


@dataclass
class MuraIndex:
    dataset_dir: str
    images: list[ImageRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    image_rows: int = 0
    study_rows: int = 0

    @property
    def rejected_images(self) -> list[Rejection]:
        return [r for r in self.rejected if r.is_image_row]

    @property
    def rejected_fraction(self) -> float:
        return len(self.rejected_images) / self.image_rows if self.image_rows else 0.0


def find_dataset_dir(data_root: str | os.PathLike[str], fs: FileSystem) -> str:
    """Accepts the folder that holds MURA-v1.1 or MURA-v1.1 itself; fails naming the missing CSV."""
    root = os.fspath(data_root).rstrip("/")
    if not fs.isdir(root):
        raise MuraLayoutError(f"data root {root} is not a directory")
    holder = posixpath.join(root, DATASET_DIR)
    dataset_dir = holder if fs.isdir(holder) else root
    expected = [name for split in SOURCE_SPLITS for name in (image_paths_csv(split), labeled_studies_csv(split))]
    missing = [name for name in expected if not fs.isfile(posixpath.join(dataset_dir, name))]
    if missing:
        raise MuraLayoutError(
            f"{dataset_dir} is not a MURA-v1.1 folder: missing {', '.join(missing)}. "
            f"Point at the folder that holds {DATASET_DIR}/ (with its four CSVs), or at {DATASET_DIR}/ itself."
        )
    return fs.resolve(absolute(dataset_dir))


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str = "", body_part: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail, self.body_part = reason, detail, body_part


def read_mura(data_root: str | os.PathLike[str], config: DataConfig | None = None, progress: bool = True) -> MuraIndex:
    config = config or DataConfig()
    fs = filesystem_for(os.fspath(data_root))
    dataset_dir = find_dataset_dir(data_root, fs)
    index = MuraIndex(dataset_dir=dataset_dir)
    reader = _Reader(index, config, fs)
    for split in SOURCE_SPLITS:
        reader.read_studies(split)
    rows = [
        (split, row)
        for split in SOURCE_SPLITS
        for row in _csv_rows(fs, posixpath.join(dataset_dir, image_paths_csv(split)))
    ]
    index.image_rows = len(rows)
    reader.note_train_patients(rows)
    for split, row in tqdm(rows, desc="reading image headers", unit="img", disable=None if progress else True):
        reader.read_image(split, row)
    reader.reject_studies_without_images()
    return index


# A MURA path is under 100 bytes; a longer line is not a row, and only its first bytes are kept in memory.
MAX_LINE_BYTES = 64 * 1024
_CHUNK_BYTES = 1024 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")  # what spreadsheets write: Unix, Windows and classic Mac endings
_SHOWN_BYTES = 200  # of a line that could not be parsed, in the rejected-row report
_NUL = b"\x00"


@dataclass(frozen=True)
class _CsvRow:
    line: int  # 1-based physical line of the CSV file
    fields: list[str]  # empty for a blank line, or when `problem` says why the line has no fields
    problem: str = ""
    shown: str = ""  # the line as far as it can be shown, when it could not be parsed

    @property
    def path(self) -> str:
        """The path column as written, for reports; the printable start of the line when it had no columns."""
        return self.fields[0] if self.fields else self.shown

    def check_columns(self, expected: int) -> None:
        if self.problem:
            raise _Rejected("malformed_row", self.problem)
        if not self.fields:
            raise _Rejected("malformed_row", "blank line")
        if len(self.fields) != expected:
            columns = len(self.fields)
            raise _Rejected("malformed_row", f"{columns} column{'s' * (columns != 1)}, expected {expected}")


def _csv_rows(fs: FileSystem, path: str) -> Iterator[_CsvRow]:
    """The rows of one CSV; a CSV that cannot be read at all means the root is not usable (a clear error, no
    traceback), where an image that cannot be read is one rejected row."""
    try:
        with fs.open(path) as handle:
            rows = [_parse_line(number, start, length) for number, (start, length) in enumerate(_lines(handle), 1)]
    except fs.errors as error:
        raise MuraLayoutError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    yield from rows


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Yields each line's first MAX_LINE_BYTES (without its ending) and its full length, reading 1 MiB at a time.

    A 200 MB file with no newline is read through once and costs 1 MiB of memory; a last line without an ending
    (a file cut mid-row) is a line like the others.
    """
    kept, length, after_cr = b"", 0, False
    for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
        if after_cr and chunk.startswith(b"\n"):  # a CRLF split across two chunks
            chunk = chunk[1:]
        after_cr = chunk.endswith(b"\r")
        start = 0
        for end in _LINE_END.finditer(chunk):
            piece = chunk[start : end.start()]
            yield kept + piece[: MAX_LINE_BYTES - len(kept)], length + len(piece)
            kept, length, start = b"", 0, end.end()
        rest = chunk[start:]
        kept, length = kept + rest[: MAX_LINE_BYTES - len(kept)], length + len(rest)
    if length:
        yield kept, length


def _parse_line(number: int, start: bytes, length: int) -> _CsvRow:
    problem = _line_problem(start, length)
    if problem:
        shown = _printable(start[:_SHOWN_BYTES]) + ("..." if length > _SHOWN_BYTES else "")
        return _CsvRow(number, [], problem, shown)
    text = start.decode("utf-8")
    if number == 1:
        text = text.removeprefix("\ufeff")  # a BOM appears when a CSV was re-saved by a spreadsheet
    return _CsvRow(number, next(csv.reader([text]), []))


def _line_problem(start: bytes, length: int) -> str:
    """Why a line cannot be handed to the csv module, which takes any bounded UTF-8 line without NUL or newline."""
    if length > MAX_LINE_BYTES:
        return f"line of {length} bytes, longer than the {MAX_LINE_BYTES}-byte limit"
    if _NUL in start:
        return f"NUL byte at byte {start.index(_NUL) + 1}"
    try:
        start.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not valid UTF-8 at byte {error.start + 1}"
    return ""


def _printable(data: bytes) -> str:
    """Bytes as text a terminal and a CSV report can hold: bad UTF-8 and control characters escaped."""
    text = data.decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


class _Reader:
    def __init__(self, index: MuraIndex, config: DataConfig, fs: FileSystem) -> None:
        self.index = index
        self.config = config
        self.fs = fs
        self.root = index.dataset_dir
        self.study_labels: dict[str, int] = {}  # study folder -> label
        self.mismatched_studies: set[str] = set()
        self.study_rows: dict[str, tuple[str, int, str, str]] = {}  # folder -> (csv, line, raw path, part)
        self.studies_with_images: set[str] = set()
        self.seen_images: set[str] = set()
        self.train_patients: set[str] = set()

    def reject(self, csv_file: str, line: int, path: str, error: _Rejected) -> None:
        self.index.rejected.append(Rejection(csv_file, line, path, error.reason, error.detail, error.body_part))

    def read_studies(self, split: str) -> None:
        csv_file = labeled_studies_csv(split)
        for row in _csv_rows(self.fs, posixpath.join(self.root, csv_file)):
            self.index.study_rows += 1
            line, raw = row.line, row.path
            try:
                key = self.study_row(split, row)
            except _Rejected as error:
                self.reject(csv_file, line, raw, error)
                continue
            if key.folder in self.study_rows:
                first = self.study_rows[key.folder]
                self.reject(csv_file, line, raw, _Rejected("duplicate_row", f"first at line {first[1]}", key.body_part))
                continue
            self.study_rows[key.folder] = (csv_file, line, raw, key.body_part)

    def study_row(self, split: str, row: _CsvRow) -> StudyKey:
        row.check_columns(2)
        raw, label_text = row.fields
        if label_text.strip() not in ("0", "1"):
            raise _Rejected("malformed_row", f"label {label_text!r}, expected 0 or 1")
        relative = self.relative_path(raw)
        match = STUDY_PATH.fullmatch(relative)
        if not match:
            raise _Rejected("malformed_path", relative)
        key = parse_study(match)
        self.check_split_and_part(key, split)
        label = int(label_text)
        self.study_labels[key.folder] = label
        if label != key.folder_label:
            self.mismatched_studies.add(key.folder)
            raise _Rejected(
                "label_mismatch", f"CSV label {label}, folder suffix says {key.folder_label}", key.body_part
            )
        return key

    def relative_path(self, raw: str) -> str:
        """Checks the CSV path as text, before any file system call, and strips the dataset prefix."""
        pure = PurePosixPath(raw.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (raw[1:2] == ":"):
            raise _Rejected("outside_root", raw)
        if not raw.startswith(f"{DATASET_DIR}/"):
            raise _Rejected("bad_prefix", raw)
        return raw[len(DATASET_DIR) + 1 :]

    @staticmethod
    def check_split_and_part(key: StudyKey, split: str) -> None:
        if key.split != split:
            raise _Rejected("wrong_split", f"path is under {key.split}/, CSV is {split}'s", key.body_part)
        if key.body_part not in BODY_PARTS:
            raise _Rejected("unknown_body_part", key.body_part)

    def note_train_patients(self, rows: list[tuple[str, _CsvRow]]) -> None:
        for split, row in rows:
            match = IMAGE_PATH.search(row.fields[0]) if split == "train" and row.fields else None
            if match:
                self.train_patients.add(match["patient"])

    def read_image(self, split: str, row: _CsvRow) -> None:
        try:
            self.index.images.append(self.image_row(split, row))
        except _Rejected as error:
            self.reject(image_paths_csv(split), row.line, row.path, error)

    def image_row(self, split: str, row: _CsvRow) -> ImageRecord:
        row.check_columns(1)
        if not row.path:
            raise _Rejected("malformed_row", "empty path")
        relative = self.relative_path(row.path)
        match = IMAGE_PATH.fullmatch(relative)
        if not match:
            raise _Rejected("malformed_path", relative)
        key = parse_study(match)
        self.check_split_and_part(key, split)
        part = key.body_part
        if relative in self.seen_images:
            raise _Rejected("duplicate_row", relative, part)
        self.seen_images.add(relative)
        if key.folder in self.study_labels:
            self.studies_with_images.add(key.folder)
        if key.folder in self.mismatched_studies:
            raise _Rejected("label_mismatch", f"study {key.folder}", part)
        if key.folder not in self.study_rows:
            raise _Rejected("unlabeled_study", f"no row for {DATASET_DIR}/{key.folder}/", part)
        if split == "valid" and key.patient_id in self.train_patients:
            raise _Rejected("patient_in_both_splits", key.patient_id, part)
        header = self.image_header(relative, part)
        return ImageRecord(
            path=posixpath.join(self.root, relative),
            source_path=row.path,
            source_split=split,
            split=pipeline_split(split, key.patient_id, self.config.eval_fraction, self.config.split_salt),
            body_part=part,
            patient_id=key.patient_id,
            study_id=key.study_id,
            image_index=int(match["index"]),
            label=self.study_labels[key.folder],
            format=header.format,
            height=header.height,
            width=header.width,
            channels=header.channels,
            csv_line=row.line,
        )

    def image_header(self, relative: str, part: str) -> ImageHeader:
        candidate = posixpath.join(self.root, relative)
        real = self.fs.resolve(candidate)
        if not is_within(self.root, real):
            raise _Rejected("outside_root", f"resolves to {real}", part)
        if not self.fs.isfile(real):
            raise _Rejected("missing_file", candidate, part)
        try:
            with self.fs.open(real) as stream:
                header = read_image_header(stream)
                check_complete(stream, header.format)
                return header
        except ImageHeaderError as error:
            raise _Rejected(error.reason, str(error), part) from None
        except self.fs.errors as error:
            raise _Rejected("unreadable", getattr(error, "strerror", None) or str(error), part) from None

    def reject_studies_without_images(self) -> None:
        for folder, (csv_file, line, raw, part) in self.study_rows.items():
            if folder not in self.studies_with_images:
                error = _Rejected("study_without_images", folder, part)
                self.index.rejected.append(Rejection(csv_file, line, raw, error.reason, error.detail, part))
