"""A folder of DICOM radiographs as a MURA-v1.1 tree, so that the audit and the pipeline read it unchanged.

Studies are grouped by StudyInstanceUID, patients by a hash of PatientID (never written in clear), the body part
comes from BodyPartExamined through `BODY_PART_NAMES` (or one part for the whole folder), labels from the user's
CSV of `StudyInstanceUID,label`. The whole folder goes to one of MURA's splits; importing into a root that already
holds a tree adds to it (a train folder, then a valid folder), and a patient never lands on both sides. Every file
is either converted or listed with its reason.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mura.dicom import REASONS as DICOM_REASONS
from mura.dicom import DicomError, check_radiograph, png_bytes, radiograph_pixels, read_dicom
from mura.layout import (
    BODY_PARTS,
    DATASET_DIR,
    SOURCE_SPLITS,
    STUDY_PATH,
    StudyKey,
    labeled_studies_csv,
    parse_study,
    write_csvs,
)

# BodyPartExamined, upper-cased, laterality words dropped, letters only (so "L Upper-Arm" is UPPERARM): DICOM's
# defined terms (PS3.16 Annex L) for MURA's seven parts and the variants PACS exports commonly carry. MURA's own
# names (XR_WRIST) are accepted too. Anything else is skipped as unknown_body_part unless --body-part says.
BODY_PART_NAMES = {
    "ELBOW": "XR_ELBOW",
    "ELBOWS": "XR_ELBOW",
    "FINGER": "XR_FINGER",
    "FINGERS": "XR_FINGER",
    "THUMB": "XR_FINGER",
    "FOREARM": "XR_FOREARM",
    "FOREARMS": "XR_FOREARM",
    "LOWERARM": "XR_FOREARM",
    "HAND": "XR_HAND",
    "HANDS": "XR_HAND",
    "HUMERUS": "XR_HUMERUS",
    "UPPERARM": "XR_HUMERUS",
    "SHOULDER": "XR_SHOULDER",
    "SHOULDERS": "XR_SHOULDER",
    "WRIST": "XR_WRIST",
    "WRISTS": "XR_WRIST",
}
_LATERALITY = {"LEFT", "RIGHT", "L", "R", "LT", "RT", "BILATERAL", "BILAT", "BOTH"}

PATIENT_DIGITS = 15  # patientNNN... from 8 bytes of sha256; 10**15 names keep collisions unlikely at any PACS size
MANIFEST = "dicom_studies.csv"  # beside MURA-v1.1/: each imported study's folder and sha256 of its StudyInstanceUID
SKIPPED = "dicom_skipped.csv"  # beside MURA-v1.1/: the last import's files that were not converted, and why

REASONS = {
    **DICOM_REASONS,
    "no_study_uid": "no StudyInstanceUID to group the file into a study",
    "no_patient_id": "no PatientID, so the patient cannot be kept on one side of the split",
    "unknown_body_part": "BodyPartExamined is missing or none of MURA's seven parts; pass --body-part for the folder",
    "mixed_body_parts": "the study's images show more than one body part, and its label cannot say which is abnormal",
    "conflicting_patient": "the study's files name different PatientIDs",
    "no_label": "the study has no row in the labels CSV",
    "already_imported": "the study is already in the tree (an earlier import)",
    "patient_in_other_split": "the patient's earlier studies are in the other split; a patient stays on one side",
}


class DicomImportError(Exception):
    """The import as a whole cannot start: a labels CSV it cannot use, a folder without files."""


@dataclass(frozen=True)
class Skipped:
    file: str  # relative to the source folder
    reason: str  # a key of REASONS
    detail: str = ""


@dataclass
class ImportSummary:
    dataset_dir: Path
    studies: list[tuple[StudyKey, int]] = field(default_factory=list)  # each converted study and its image count
    skipped: list[Skipped] = field(default_factory=list)
    skipped_report: Path | None = None


def mura_body_part(body_part_examined: str) -> str | None:
    """MURA's folder name (XR_WRIST) for a BodyPartExamined value or a --body-part argument; None when unknown."""
    words = [w for w in re.findall(r"[A-Z]+", body_part_examined.upper()) if w not in _LATERALITY]
    if words[:1] == ["XR"]:
        words = words[1:]
    return BODY_PART_NAMES.get("".join(words))


def patient_folder(patient_id: str) -> str:
    """A MURA-style folder name from a hash of the PatientID: the same on every import, the ID never in clear."""
    digest = hashlib.sha256(patient_id.encode()).digest()
    return f"patient{int.from_bytes(digest[:8], 'big') % 10**PATIENT_DIGITS:0{PATIENT_DIGITS}d}"


def study_hash(study_uid: str) -> str:
    return hashlib.sha256(study_uid.encode()).hexdigest()


def read_labels(path: Path) -> dict[str, int]:
    """`StudyInstanceUID,label` rows (label 1 = abnormal, 0 = normal), an optional header line first."""
    labels: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if not any(cell.strip() for cell in row) or (reader.line_num == 1 and _is_header(row)):
                    continue
                problem = _label_problem(row, labels)
                if problem:
                    raise DicomImportError(f"{path} line {reader.line_num}: {problem}")
                labels[row[0].strip()] = int(row[1])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DicomImportError(f"cannot read the labels CSV {path}: {error}") from None
    if not labels:
        raise DicomImportError(f"{path} holds no StudyInstanceUID,label row")
    return labels


def _is_header(row: list[str]) -> bool:
    return row[0].strip().lower() == "studyinstanceuid"


def _label_problem(row: list[str], labels: dict[str, int]) -> str:
    if len(row) != 2:
        return f"expected StudyInstanceUID,label, got {len(row)} columns"
    uid, label = row[0].strip(), row[1].strip()
    if not uid:
        return "no StudyInstanceUID"
    if label not in ("0", "1"):
        return f"the label is 0 (normal) or 1 (abnormal), got {label!r}"
    if labels.get(uid, int(label)) != int(label):
        return f"study {uid} was labeled {labels[uid]} on an earlier line"
    return ""


@dataclass(frozen=True)
class _Image:
    path: Path
    name: str  # relative to the source folder
    study_uid: str
    patient_id: str
    body_part: str
    study_date: str


@dataclass
class _Tree:
    """What a root already holds: each patient's split, the highest study number per patient and part, the
    studies imported before."""

    patient_split: dict[str, str] = field(default_factory=dict)
    last_study: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    imported: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, root: Path) -> _Tree:
        tree = cls()
        for split in SOURCE_SPLITS:
            csv_path = root / DATASET_DIR / labeled_studies_csv(split)
            if not csv_path.is_file():
                continue
            with csv_path.open(newline="", encoding="utf-8", errors="replace") as handle:
                for row in csv.reader(handle):
                    match = STUDY_PATH.fullmatch(row[0].removeprefix(f"{DATASET_DIR}/")) if row else None
                    if match:  # rows that do not parse are the audit's to report
                        key = parse_study(match)
                        tree.patient_split[key.patient_id] = key.split
                        number = int(key.study.removeprefix("study"))
                        part_patient = (key.body_part, key.patient_id)
                        tree.last_study[part_patient] = max(tree.last_study[part_patient], number)
        if (root / MANIFEST).is_file():
            with (root / MANIFEST).open(newline="") as handle:
                tree.imported = {row["study_uid_sha256"] for row in csv.DictReader(handle)}
        return tree


def import_dicom(
    src: Path,
    root: Path,
    labels: dict[str, int],
    split: str = "train",
    body_part: str | None = None,
    max_side: int = 512,
    progress: bool = True,
) -> ImportSummary:
    """Converts every radiograph under `src` into `root`/MURA-v1.1/`split`, adds the studies to the four CSVs, and
    writes the skipped files to `root`/dicom_skipped.csv. `body_part` (MURA's name) overrides BodyPartExamined."""
    if split not in SOURCE_SPLITS:
        raise DicomImportError(f"the split is one of {', '.join(SOURCE_SPLITS)}, got {split!r}")
    if body_part is not None and body_part not in BODY_PARTS:
        raise DicomImportError(f"the body part is one of {', '.join(BODY_PARTS)}, got {body_part!r}")
    files = sorted(path for path in src.rglob("*") if path.is_file())
    if not files:
        raise DicomImportError(f"{src} holds no file")
    summary = ImportSummary(dataset_dir=root / DATASET_DIR)
    images = _read_headers(src, files, body_part, summary.skipped, progress)
    tree = _Tree.read(root)
    studies = _accept(images, labels, split, tree, summary.skipped)
    summary.dataset_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    with tqdm(total=sum(map(len, studies)), desc="converting", unit="img", disable=None if progress else True) as bar:
        for study in studies:
            converted = []
            for image in study:
                try:
                    converted.append(png_bytes(radiograph_pixels(read_dicom(image.path)), max_side))
                except DicomError as error:
                    summary.skipped.append(Skipped(image.name, error.reason, error.detail))
                bar.update()
            if converted:
                key = _write_study(summary.dataset_dir, study[0], split, labels[study[0].study_uid], tree, converted)
                summary.studies.append((key, len(converted)))
                manifest.append((f"{DATASET_DIR}/{key.folder}/", study_hash(study[0].study_uid)))
    write_csvs(summary.dataset_dir, summary.studies, append=True)
    _write_rows(root / MANIFEST, ["study_path", "study_uid_sha256"], manifest, append=True)
    summary.skipped_report = root / SKIPPED
    skipped = [[s.file, s.reason, s.detail] for s in sorted(summary.skipped, key=lambda s: s.file)]
    _write_rows(summary.skipped_report, ["file", "reason", "detail"], skipped)
    return summary


def _write_rows(path: Path, header: list[str], rows: list, append: bool = False) -> None:
    """A CSV with a header line; `append` adds the rows to the file already there (the header only when new)."""
    new = not (append and path.is_file())
    with path.open("w" if new else "a", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows([header] * new + rows)


def _read_headers(
    src: Path, files: list[Path], body_part: str | None, skipped: list[Skipped], progress: bool
) -> list[_Image]:
    """Every file's header (pixels left on disk): the radiographs that can be grouped, the others skipped."""
    images = []
    for path in tqdm(files, desc="reading DICOM headers", unit="file", disable=None if progress else True):
        name = path.relative_to(src).as_posix()
        try:
            ds = read_dicom(path, pixels=False)
            check_radiograph(ds)
        except DicomError as error:
            skipped.append(Skipped(name, error.reason, error.detail))
            continue
        study_uid, patient_id = str(ds.get("StudyInstanceUID", "")).strip(), str(ds.get("PatientID", "")).strip()
        examined = str(ds.get("BodyPartExamined", "")).strip()
        part = body_part or mura_body_part(examined)
        if not study_uid:
            skipped.append(Skipped(name, "no_study_uid"))
        elif not patient_id:
            skipped.append(Skipped(name, "no_patient_id"))
        elif part is None:
            said = f"BodyPartExamined {examined!r}" if examined else "no BodyPartExamined"
            skipped.append(Skipped(name, "unknown_body_part", f"{said}; pass --body-part for the folder"))
        else:
            images.append(_Image(path, name, study_uid, patient_id, part, str(ds.get("StudyDate", ""))))
    return images


def _accept(
    images: list[_Image], labels: dict[str, int], split: str, tree: _Tree, skipped: list[Skipped]
) -> list[list[_Image]]:
    """The studies to convert, each a list of its images, in the order their numbers are given (per patient, by
    study date); the others' files skipped with the reason."""
    by_study: dict[str, list[_Image]] = defaultdict(list)
    for image in images:
        by_study[image.study_uid].append(image)
    accepted = []
    for uid, study in by_study.items():
        parts, patients = sorted({i.body_part for i in study}), {i.patient_id for i in study}
        other_split = tree.patient_split.get(patient_folder(study[0].patient_id), split)
        if len(parts) > 1:
            reason, detail = "mixed_body_parts", f"study {uid}: {', '.join(parts)}"
        elif len(patients) > 1:
            reason, detail = "conflicting_patient", f"study {uid}: {len(patients)} different PatientIDs"
        elif uid not in labels:
            reason, detail = "no_label", f"study {uid} has no row in the labels CSV"
        elif study_hash(uid) in tree.imported:
            reason, detail = "already_imported", f"study {uid}"
        elif other_split != split:
            reason, detail = "patient_in_other_split", f"the patient's earlier studies are in {other_split}"
        else:
            accepted.append(sorted(study, key=lambda i: i.name))
            continue
        skipped.extend(Skipped(i.name, reason, detail) for i in study)
    return sorted(accepted, key=lambda s: (patient_folder(s[0].patient_id), s[0].study_date, s[0].study_uid))


def _write_study(dataset_dir: Path, first: _Image, split: str, label: int, tree: _Tree, pngs: list[bytes]) -> StudyKey:
    """Writes a study's PNGs under the patient's next study number for its body part."""
    patient = patient_folder(first.patient_id)
    tree.last_study[(first.body_part, patient)] += 1
    tree.patient_split[patient] = split
    key = StudyKey(split, first.body_part, patient, f"study{tree.last_study[(first.body_part, patient)]}", label)
    folder = dataset_dir / key.folder
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(pngs, start=1):
        (folder / f"image{index}.png").write_bytes(data)
    return key
