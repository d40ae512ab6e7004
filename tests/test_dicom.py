"""DICOM in: the reader's pixels on small known arrays, the files it refuses and why, `mura import-dicom` into a
tree that `mura audit` and the reader accept, and `mura predict` on a DICOM file against a running server.

Every DICOM file here is written by the test with pydicom; nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from cli.main import main
from cli.serve import image_bytes
from mura.dicom import DicomError, is_dicom, png_bytes, radiograph_pixels, read_dicom
from mura.dicom_import import BODY_PART_NAMES, mura_body_part, patient_folder
from mura.layout import BODY_PARTS
from mura.reader import read_mura

MURA = str(Path(sys.executable).parent / "mura")


def radiograph(
    pixels: np.ndarray,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    modality: str = "DX",
    **attributes: object,
) -> Dataset:
    """A DX image (or CR, ...) holding `pixels` as stored values, with any further attributes by keyword."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = modality, "P-1", generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    dtype = f"{'int' if signed else 'uint'}{ds.BitsAllocated}"
    ds.PixelData = pixels.astype(dtype).tobytes()
    for name, value in attributes.items():
        setattr(ds, name, value)
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixels_of(ds: Dataset, tmp_path: Path) -> list[int]:
    """The reader's 8-bit pixels of `ds` written to disk and read back, as a flat list."""
    return radiograph_pixels(read_dicom(save(ds, tmp_path / "x.dcm"))).ravel().tolist()


STORED_8 = np.array([[20, 100, 121], [57, 199, 220]])
RAMP_12 = np.array([[0, 1536, 1537, 1792], [2049, 2304, 2560, 2561], [3000, 4095, 100, 2303]])


def test_an_8_bit_image_without_window_spans_its_own_lowest_to_highest_value(tmp_path: Path) -> None:
    ds = radiograph(STORED_8, bits_stored=8)
    # (v - 20) * 255 / 200, rounded
    assert pixels_of(ds, tmp_path) == [0, 102, 129, 47, 228, 255]


def test_monochrome1_is_inverted_so_bone_stays_bright(tmp_path: Path) -> None:
    ds = radiograph(STORED_8, bits_stored=8, photometric="MONOCHROME1")
    assert pixels_of(ds, tmp_path) == [255, 153, 126, 208, 27, 0]


def test_a_12_bit_window_maps_its_bottom_to_0_and_top_to_255(tmp_path: Path) -> None:
    # DICOM's linear window (PS3.3 C.11.2.1.2.1) with c = 2048.5, w = 1025: at or below 1536 -> 0, above 2560 ->
    # 255, between ((x - 2048) / 1024 + 0.5) * 255.
    ds = radiograph(RAMP_12, WindowCenter=2048.5, WindowWidth=1025)
    assert pixels_of(ds, tmp_path) == [0, 0, 0, 64, 128, 191, 255, 255, 255, 255, 0, 191]


def test_the_first_of_several_windows_is_used(tmp_path: Path) -> None:
    ds = radiograph(RAMP_12, WindowCenter=[2048.5, 400], WindowWidth=[1025, 800])
    assert pixels_of(ds, tmp_path) == [0, 0, 0, 64, 128, 191, 255, 255, 255, 255, 0, 191]


def test_the_window_applies_to_rescaled_values(tmp_path: Path) -> None:
    # Modality values 2 * stored - 1024; the window c = 0.5, w = 1025 spans -512 to 512 of them. Without the
    # rescale, every stored value here would be above the window (255).
    stored = np.array([[0, 256, 384, 514, 640, 768, 1000]])
    ds = radiograph(stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0.5, WindowWidth=1025)
    assert pixels_of(ds, tmp_path) == [0, 0, 64, 128, 191, 255, 255]


def test_a_16_bit_image_without_window_and_a_signed_one(tmp_path: Path) -> None:
    unsigned = radiograph(np.array([[0, 16384, 32767, 65535]]), bits_stored=16)
    assert pixels_of(unsigned, tmp_path) == [0, 64, 127, 255]
    signed = radiograph(np.array([[-1000, -500, 10, 1000]]), bits_stored=16, signed=True)
    assert pixels_of(signed, tmp_path) == [0, 64, 129, 255]


def test_a_voi_lut_comes_before_the_window_and_spans_its_lowest_to_highest_entry(tmp_path: Path) -> None:
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4, 0, 16])  # 4 entries, the first for stored value 0, 16 bits each
    lut.add_new("LUTData", "OW", np.array([400, 1400, 3400, 4400], "<u2").tobytes())
    ds = radiograph(np.array([[0, 1, 2, 3, 7]]), VOILUTSequence=Sequence([lut]), WindowCenter=2, WindowWidth=2)
    # (entry - 400) * 255 / 4000; 7 is past the table: its last entry
    assert pixels_of(ds, tmp_path) == [0, 64, 191, 255, 255]


def test_an_rle_compressed_file_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    plain = radiograph(RAMP_12, WindowCenter=2048.5, WindowWidth=1025)
    compressed = radiograph(RAMP_12, WindowCenter=2048.5, WindowWidth=1025)
    compressed.compress(RLELossless)
    assert pixels_of(compressed, tmp_path) == pixels_of(plain, tmp_path)


def jpeg_ls(ds: Dataset) -> Dataset:
    """The transfer syntax of JPEG-LS, whose codecs (pyjpegls, pylibjpeg-libjpeg, gdcm) the stack does not hold."""
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(32) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    return ds


def structured_report() -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BasicTextSRStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "SR", "P-1", generate_uid()
    return ds


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    return path


@pytest.mark.parametrize(
    ("make", "reason", "says"),
    [
        (lambda: radiograph(np.zeros((3, 2, 2)), NumberOfFrames=3), "multi_frame", "3 frames"),
        (structured_report, "no_pixel_data", "Basic Text SR Storage"),
        (lambda: radiograph(np.zeros((2, 2)), modality="CT"), "not_radiograph", "Modality CT"),
        (lambda: jpeg_ls(radiograph(np.zeros((2, 2)))), "no_decoder", "JPEG-LS Lossless Image Compression needs"),
        (
            lambda: radiograph(np.zeros((2, 2)), bits_stored=8, photometric="RGB", SamplesPerPixel=3),
            "not_grayscale",
            "PhotometricInterpretation RGB",
        ),
        (lambda: radiograph(np.zeros((2, 2)), WindowCenter=10, WindowWidth=0.5), "bad_voi", "Window Width"),
    ],
)
def test_what_is_not_a_single_frame_radiograph_is_refused_with_its_reason(make, reason, says, tmp_path: Path) -> None:
    path = save(make(), tmp_path / "x.dcm")
    with pytest.raises(DicomError, match=says) as refused:
        radiograph_pixels(read_dicom(path))
    assert refused.value.reason == reason


def test_files_that_are_not_dicom_or_are_cut_short_are_refused_with_their_reason(tmp_path: Path) -> None:
    png = tmp_path / "image.dcm"
    png.write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    with pytest.raises(DicomError, match="DICM") as refused:
        read_dicom(png)
    assert refused.value.reason == "not_dicom"
    cut = truncated(save(radiograph(np.zeros((40, 40))), tmp_path / "cut.dcm"))
    with pytest.raises(DicomError) as refused:
        radiograph_pixels(read_dicom(cut))
    assert refused.value.reason == "undecodable"


def test_dicom_is_recognised_by_its_marker_not_its_name(tmp_path: Path) -> None:
    dicom = save(radiograph(np.zeros((2, 2))), tmp_path / "IM0001")
    assert is_dicom(dicom.read_bytes())
    assert not is_dicom(png_bytes(np.zeros((4, 4), np.uint8)))


def test_png_bytes_shrink_to_the_longest_side_keeping_the_aspect() -> None:
    pixels = np.tile(np.arange(256, dtype=np.uint8), (600, 4))  # 1024 wide, 600 high
    small = Image.open(io.BytesIO(png_bytes(pixels, max_side=512)))
    assert (small.size, small.mode) == ((512, 300), "L")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(pixels)))), pixels)


@pytest.mark.parametrize(
    ("examined", "part"),
    [
        ("HAND", "XR_HAND"),
        ("LEFT HAND", "XR_HAND"),
        ("R WRIST", "XR_WRIST"),
        ("THUMB", "XR_FINGER"),
        ("upper arm", "XR_HUMERUS"),
        ("LOWER_ARM", "XR_FOREARM"),
        ("XR_SHOULDER", "XR_SHOULDER"),
        ("elbow", "XR_ELBOW"),
        ("KNEE", None),
        ("CHEST", None),
        ("ARM", None),
        ("", None),
    ],
)
def test_body_part_examined_maps_to_muras_seven_or_to_nothing(examined: str, part: str | None) -> None:
    assert mura_body_part(examined) == part


def test_every_mura_body_part_has_a_dicom_name() -> None:
    assert set(BODY_PART_NAMES.values()) == set(BODY_PARTS)
    assert all(mura_body_part(part) == part for part in BODY_PARTS)


def test_image_bytes_sends_png_as_it_is_and_dicom_as_the_readers_png(tmp_path: Path) -> None:
    png = tmp_path / "image1.png"
    png.write_bytes(png_bytes(np.full((4, 4), 7, np.uint8)))
    assert image_bytes(png, max_side=512) == png.read_bytes()
    dicom = save(radiograph(RAMP_12, WindowCenter=2048.5, WindowWidth=1025), tmp_path / "IM0001")
    sent = np.asarray(Image.open(io.BytesIO(image_bytes(dicom, max_side=512))))
    assert np.array_equal(sent, radiograph_pixels(read_dicom(dicom)))
    assert Image.open(io.BytesIO(image_bytes(dicom, max_side=32))).size == (4, 3)  # 4 x 3 is already within 32


# The import: a train folder and a valid folder written here, into one root.
SECRET_IDS = ("MRN-SECRET-4711", "MRN-SECRET-0815", "MRN-SECRET-9999")
IMAGE = (np.arange(20 * 24).reshape(20, 24) * 8) % 4096  # 24 x 20: above the schema's 16-pixel minimum


def study_file(patient: str, study: str, part: str, pixels: np.ndarray = IMAGE, **attributes: object) -> Dataset:
    ds = radiograph(pixels, PatientID=patient, StudyInstanceUID=study, **attributes)
    if part:
        ds.BodyPartExamined = part
    return ds


def write_folder(folder: Path, files: dict[str, Dataset | bytes]) -> Path:
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        else:
            save(content, folder / name)
    return folder


def train_folder(folder: Path) -> Path:
    rle = study_file(SECRET_IDS[1], "1.2.4", "R WRIST", Modality="CR")
    rle.compress(RLELossless)
    return write_folder(
        folder,
        {
            "a/1.dcm": study_file(
                SECRET_IDS[0],
                "1.2.1",
                "LEFT HAND",
                StudyDate="20240301",
                WindowCenter=2048.5,
                WindowWidth=1025,
                PhotometricInterpretation="MONOCHROME1",
            ),
            "a/2.dcm": study_file(SECRET_IDS[0], "1.2.1", "HAND", StudyDate="20240301"),
            "a/3.dcm": study_file(SECRET_IDS[0], "1.2.2", "WRIST"),
            "a/4.dcm": study_file(SECRET_IDS[0], "1.2.9", "HAND", StudyDate="20230101"),
            "b/IM0001": study_file(SECRET_IDS[1], "1.2.3", "ELBOW", Modality="CR"),
            "b/IM0002": rle,
            "c/nolabel.dcm": study_file(SECRET_IDS[1], "1.2.5", "HAND"),
            "c/knee.dcm": study_file(SECRET_IDS[1], "1.2.6", "KNEE"),
            "c/sr.dcm": structured_report(),
            "c/cine.dcm": radiograph(np.zeros((3, 20, 24)), NumberOfFrames=3),
            "c/jpegls.dcm": jpeg_ls(study_file(SECRET_IDS[1], "1.2.8", "HAND")),
            "c/notes.txt": b"not an image",
            "d/m1.dcm": study_file(SECRET_IDS[1], "1.2.7", "HAND"),
            "d/m2.dcm": study_file(SECRET_IDS[1], "1.2.7", "WRIST"),
        },
    )


LABELS = (
    "StudyInstanceUID,label\n1.2.1,1\n1.2.2,0\n1.2.3,0\n1.2.4,1\n1.2.6,0\n1.2.7,1\n1.2.8,0\n1.2.9,0\n2.1,1\n2.2,0\n"
)


def import_dicom(src: Path, root: Path, labels: Path, *args: str):
    return CliRunner().invoke(main, ["import-dicom", str(src), "--out", str(root), "--labels", str(labels), *args])


def skipped_files(root: Path) -> dict[str, str]:
    with (root / "dicom_skipped.csv").open() as handle:
        return {row["file"]: row["reason"] for row in csv.DictReader(handle)}


def test_a_dicom_folder_becomes_a_mura_tree_that_the_audit_and_the_reader_accept(tmp_path: Path) -> None:
    root, labels = tmp_path / "root", tmp_path / "labels.csv"
    labels.write_text(LABELS)
    made = import_dicom(train_folder(tmp_path / "train"), root, labels)
    assert made.exit_code == 0, made.output
    assert skipped_files(root) == {
        "c/nolabel.dcm": "no_label",
        "c/knee.dcm": "unknown_body_part",
        "c/sr.dcm": "no_pixel_data",
        "c/cine.dcm": "multi_frame",
        "c/jpegls.dcm": "no_decoder",
        "c/notes.txt": "not_dicom",
        "d/m1.dcm": "mixed_body_parts",
        "d/m2.dcm": "mixed_body_parts",
    }
    valid = write_folder(
        tmp_path / "valid",
        {
            "IM1": study_file(SECRET_IDS[2], "2.1", "SHOULDER"),
            "IM2": study_file(SECRET_IDS[0], "2.2", "HAND"),  # a train patient: stays out of valid
        },
    )
    assert import_dicom(valid, root, labels, "--split", "valid").exit_code == 0
    assert skipped_files(root) == {"IM2": "patient_in_other_split"}
    again = import_dicom(tmp_path / "train", root, labels)
    assert again.exit_code == 1 and "no study of" in again.output
    assert set(skipped_files(root).values()) >= {"already_imported"}

    audited = CliRunner().invoke(main, ["audit", str(root)])
    assert audited.exit_code == 0, audited.output
    assert "7 of 7 image rows accepted, 0 rejected" in audited.output
    index = read_mura(root, progress=False)
    patient = {secret: patient_folder(secret) for secret in SECRET_IDS}
    studies = {(r.source_split, r.study_id, r.label, r.image_index) for r in index.images}
    assert studies == {
        ("train", f"XR_HAND/{patient[SECRET_IDS[0]]}/study1", 0, 1),  # 1.2.9, the earlier study
        ("train", f"XR_HAND/{patient[SECRET_IDS[0]]}/study2", 1, 1),  # 1.2.1: a/1.dcm, then a/2.dcm
        ("train", f"XR_HAND/{patient[SECRET_IDS[0]]}/study2", 1, 2),
        ("train", f"XR_WRIST/{patient[SECRET_IDS[0]]}/study1", 0, 1),
        ("train", f"XR_ELBOW/{patient[SECRET_IDS[1]]}/study1", 0, 1),
        ("train", f"XR_WRIST/{patient[SECRET_IDS[1]]}/study1", 1, 1),  # RLE-compressed
        ("valid", f"XR_SHOULDER/{patient[SECRET_IDS[2]]}/study1", 1, 1),
    }
    assert {r.split for r in index.images if r.source_split == "valid"} == {"test"}
    first = next(r for r in index.images if r.study_id.endswith("study2") and r.image_index == 1)
    written = np.asarray(Image.open(first.path))
    assert np.array_equal(written, radiograph_pixels(read_dicom(tmp_path / "train" / "a/1.dcm")))
    assert written[0, 0] == 255  # MONOCHROME1, below the window: white
    for path in root.rglob("*"):
        if path.is_file():
            assert not any(secret.encode() in path.read_bytes() for secret in SECRET_IDS), path


def test_import_dicom_refuses_a_bad_labels_csv_naming_the_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("1.2.1,1\n1.2.2,maybe\n")
    src = write_folder(tmp_path / "src", {"IM1": study_file("P", "1.2.1", "HAND")})
    refused = import_dicom(src, tmp_path / "root", labels)
    assert refused.exit_code == 1
    assert "line 2: the label is 0 (normal) or 1 (abnormal), got 'maybe'" in refused.output
    assert not (tmp_path / "root").exists()


def test_body_part_override_names_the_part_of_every_file_in_the_folder(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("1.2.1,1\n")
    wide = np.tile(np.arange(64), (40, 1)) * 64  # 64 x 40
    src = write_folder(
        tmp_path / "src", {"IM1": study_file("P", "1.2.1", "", wide), "IM2": study_file("P", "1.2.1", "")}
    )
    assert import_dicom(src, tmp_path / "plain", labels).exit_code == 1  # no BodyPartExamined: nothing converted
    assert set(skipped_files(tmp_path / "plain").values()) == {"unknown_body_part"}
    made = import_dicom(src, tmp_path / "root", labels, "--body-part", "forearm", "--max-side", "32")
    assert made.exit_code == 0, made.output
    [record, second] = read_mura(tmp_path / "root", progress=False).images
    assert (record.body_part, record.label, second.image_index) == ("XR_FOREARM", 1, 2)
    assert (record.width, record.height, second.width) == (32, 20, 24)  # 64 x 40 shrunk; 24 x 20 kept


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`mura serve` on a small model that decodes what it is sent (PNG or JPEG only) and answers 0.3."""
    from tests.serve_process import ServeProcess
    from tests.small_models import one_version

    model_dir = one_version(tmp_path_factory.mktemp("dicom-model"), marker=0.3)
    served = ServeProcess(
        "local", ["--model-base-path", str(model_dir), "--quiet"], tmp_path_factory.mktemp("log") / "serve.log"
    )
    yield served
    assert served.stop() == 0, served.log()


def test_mura_predict_answers_for_a_dicom_file_it_converts_and_refuses_one_without_pixels(server, tmp_path) -> None:
    from serving.client import RestClient, ServingClientError

    dicom = save(radiograph(RAMP_12, WindowCenter=2048.5, WindowWidth=1025), tmp_path / "IM0001")
    with pytest.raises(ServingClientError, match="neither PNG nor JPEG"):  # sent as it is, the server refuses it
        RestClient(server.url, retries=0).predict([dicom.read_bytes()])
    answered = subprocess.run([MURA, "predict", str(dicom), "--url", server.url], capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr
    assert "0.300" in next(line for line in answered.stdout.splitlines() if str(dicom) in line)
    report = save(structured_report(), tmp_path / "report.dcm")
    refused = subprocess.run([MURA, "predict", str(report), "--url", server.url], capture_output=True, text=True)
    assert (
        refused.returncode == 1 and f"{report}: no_pixel_data: no pixel data (Basic Text SR Storage)" in refused.stderr
    )
