"""DICOM radiographs to the 8-bit grayscale pixels the pipeline trains on, through pydicom's own transforms.

A hospital's radiographs are DICOM, not MURA's PNGs: 8 to 16 stored bits, a rescale to modality units, a VOI LUT or
window saying which of those values are worth seeing, and sometimes `MONOCHROME1` (white is zero). The rules:

1. the stored values, decoded by pydicom (any bit depth, signed or not, uncompressed or with an installed codec);
2. the Modality LUT or rescale (`apply_modality_lut`);
3. the VOI LUT if the file has one, else the window (`apply_voi`, `apply_windowing`), the first of several; the
   VOI's output range becomes 0-255 (a window's bottom 0, its top 255). Without either, the image's own lowest to
   highest value becomes 0-255;
4. `MONOCHROME1` inverted, so bone is bright as in MURA.

Anything else (no pixels, several frames, colour, not a radiograph's modality, a codec that is not installed)
is refused with one of `REASONS`, never a traceback.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder

# Computed, digital and plain-film radiography: the projection X-rays MURA holds.
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")

# Why a DICOM file was not converted; the codes appear in `mura import-dicom`'s skipped list.
REASONS = {
    "unreadable": "the file could not be read",
    "not_dicom": "no DICOM preamble with the 'DICM' marker at byte 128, or the file does not parse as DICOM",
    "no_pixel_data": "a DICOM object without an image (a structured report, a presentation state, a DICOMDIR)",
    "not_radiograph": f"the Modality is none of {', '.join(RADIOGRAPH_MODALITIES)} (CT, MR, ultrasound, ...)",
    "multi_frame": "more than one frame: a series or cine loop, not a single radiograph",
    "not_grayscale": f"the photometric interpretation is not {' or '.join(GRAYSCALE)}",
    "no_decoder": "the pixels are compressed with a codec that no installed pixel-data handler decodes",
    "undecodable": "the pixel data does not decode (truncated or corrupt)",
    "bad_voi": "the VOI LUT or window cannot be applied (e.g. a window width below 1)",
}


class DicomError(ValueError):
    """A file that is not a convertible single-frame radiograph; `reason` is a key of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def is_dicom(head: bytes) -> bool:
    """DICOM's file format: a 128-byte preamble, then `DICM`. The suffix says nothing (`.dcm`, none, `.IMA`)."""
    return head[128:132] == b"DICM"


def read_dicom(source: str | os.PathLike[str] | BinaryIO, pixels: bool = True) -> Dataset:
    """The file's dataset; `pixels=False` leaves large values (the pixel data) on disk until asked for."""
    try:
        return pydicom.dcmread(source, defer_size=None if pixels else "16 KB")
    except InvalidDicomError as error:
        raise DicomError("not_dicom", str(error).split(". Use force=True")[0]) from None
    except OSError as error:
        raise DicomError("unreadable", str(error)) from None
    except Exception as error:  # pydicom raises many kinds on bytes that only start like DICOM
        raise DicomError("not_dicom", f"does not parse as DICOM: {error}") from None


def check_radiograph(ds: Dataset) -> None:
    """Refuses, from the header alone, what is not a single-frame grayscale radiograph that can be decoded here."""
    if "PixelData" not in ds:
        kind = ds.get("SOPClassUID")
        raise DicomError("no_pixel_data", f"no pixel data ({kind.name if kind else 'no SOP class'})")
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        said = f"Modality {modality}" if modality else "no Modality"
        raise DicomError("not_radiograph", f"{said}; radiographs are {', '.join(RADIOGRAPH_MODALITIES)}")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise DicomError("multi_frame", f"{frames} frames")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in GRAYSCALE:
        raise DicomError("not_grayscale", f"PhotometricInterpretation {photometric or 'missing'}")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax is None:
        return  # no file meta: pydicom decodes the pixels as implicit little endian, or says why not
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomError("no_decoder", f"pydicom has no decoder for {syntax.name}") from None
    if not decoder.is_available:
        raise DicomError(
            "no_decoder", f"{syntax.name} needs one of: {'; '.join(decoder.missing_dependencies)} (not installed)"
        )


def radiograph_pixels(ds: Dataset) -> np.ndarray:
    """The image as uint8 [rows, columns], by the rules of this module's docstring."""
    check_radiograph(ds)
    try:
        stored = ds.pixel_array
    except Exception as error:  # the decoders raise ValueError, RuntimeError, struct and zlib errors
        raise DicomError("undecodable", str(error).splitlines()[0]) from None
    values = apply_modality_lut(stored, ds)
    try:
        shown, low, high = _voi(values, ds)
    except ValueError as error:
        raise DicomError("bad_voi", str(error)) from None
    scaled = (shown - low) * (255.0 / (high - low)) if high != low else np.zeros_like(shown, dtype=np.float64)
    pixels = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - pixels if ds.PhotometricInterpretation == "MONOCHROME1" else pixels


def _voi(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, float, float]:
    """The VOI transform's output and the two ends of its range: a VOI LUT's lowest and highest entry, a window's
    bottom and top (pydicom's output range, found by sending it -inf and +inf), or the image's own extremes."""
    if ds.get("VOILUTSequence"):
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        entries = np.arange(descriptor[1], descriptor[1] + (descriptor[0] or 2**16))
        table = apply_voi(entries, ds)
        return apply_voi(np.rint(values).astype(np.int64), ds), float(table.min()), float(table.max())
    if "WindowCenter" in ds and "WindowWidth" in ds:
        low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
        return apply_windowing(values, ds), float(low), float(high)
    return values, float(values.min()), float(values.max())


def png_bytes(pixels: np.ndarray, max_side: int = 0) -> bytes:
    """uint8 pixels as a grayscale PNG, shrunk (aspect kept) so that the longest side is at most `max_side`."""
    image = Image.fromarray(pixels, mode="L")
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def radiograph_png(data: bytes, max_side: int = 0) -> bytes:
    """A DICOM file's bytes to the PNG the pipeline would have trained on."""
    return png_bytes(radiograph_pixels(read_dicom(io.BytesIO(data))), max_side)
