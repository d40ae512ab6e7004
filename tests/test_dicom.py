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
    ComputedRadiographyImageStorage,
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
        ("Left Hand", "XR_HAND"),
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
