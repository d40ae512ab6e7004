"""Reads an image's format, size and channel count from its first bytes, and checks its last bytes, without decoding.

Auditing 40k radiographs by decoding them would take minutes; their headers and tails take seconds.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # an empty IEND chunk: length, type, CRC
JPEG_EOI = b"\xff\xd9"
# Bytes some writers pad a JPEG with after its EOI marker (to a block size, or a stray newline).
_JPEG_PADDING = b"\x00 \t\r\n"
# How much of a file's end is read: a page, enough to see past a JPEG's padding.
TAIL_BYTES = 4096

# PNG colour type -> channels once decoded (palette images decode to RGB).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MAX_SEGMENTS = 1000


class ImageHeaderError(ValueError):
    """The bytes are not a PNG or JPEG whose header can be read; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "png" or "jpeg"
    width: int
    height: int
    channels: int


def read_image_header(stream: BinaryIO) -> ImageHeader:
    start = stream.read(8)
    if start.startswith(PNG_SIGNATURE):
        header = _png_header(stream)
    elif start.startswith(JPEG_SOI):
        stream.seek(2)
        header = _jpeg_header(stream)
    else:
        raise ImageHeaderError("not_png_or_jpeg", f"bytes start with {start[:8]!r}, neither PNG nor JPEG")
    if header.width <= 0 or header.height <= 0:
        raise ImageHeaderError("corrupt_image", f"{header.format} header gives size {header.width}x{header.height}")
    return header


def check_complete(stream: BinaryIO, image_format: str) -> None:
    """Rejects a file cut short: its header may be intact, but a PNG must end with IEND and a JPEG with EOI.

    Reads only the last TAIL_BYTES (a seek from the end works on local files, tf.io.gfile and in-memory bytes), so
    a truncated download is caught at audit time instead of when Beam decodes the pixels.
    """
    stream.seek(0, io.SEEK_END)
    stream.seek(max(0, stream.tell() - TAIL_BYTES))
    tail = stream.read(TAIL_BYTES)
    if image_format == "png" and not tail.endswith(PNG_IEND):
        raise ImageHeaderError("corrupt_image", "truncated: no IEND chunk at the end of the PNG")
    if image_format == "jpeg" and not tail.rstrip(_JPEG_PADDING).endswith(JPEG_EOI):
        raise ImageHeaderError("corrupt_image", "truncated: no EOI marker (FF D9) at the end of the JPEG")


def _png_header(stream: BinaryIO) -> ImageHeader:
    chunk = stream.read(8 + 13)
    if len(chunk) < 21 or chunk[4:8] != b"IHDR":
        raise ImageHeaderError("corrupt_image", "PNG without a complete IHDR chunk")
    width, height, _depth, colour_type = struct.unpack(">IIBB", chunk[8:18])
    if colour_type not in _PNG_CHANNELS:
        raise ImageHeaderError("corrupt_image", f"PNG with unknown colour type {colour_type}")
    return ImageHeader("png", width, height, _PNG_CHANNELS[colour_type])


def _jpeg_header(stream: BinaryIO) -> ImageHeader:
    for _ in range(_JPEG_MAX_SEGMENTS):
        prefix = stream.read(1)
        if not prefix:
            break
        if prefix != b"\xff":
            raise ImageHeaderError("corrupt_image", "JPEG segment structure is broken before the frame header")
        marker_byte = stream.read(1)
        while marker_byte == b"\xff":  # markers may be preceded by fill bytes
            marker_byte = stream.read(1)
        if not marker_byte or marker_byte == b"\xd9":
            break
        marker = marker_byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # segments without a length
            continue
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            break
        (length,) = struct.unpack(">H", length_bytes)
        if marker in _JPEG_SOF:
            frame = stream.read(6)
            if len(frame) < 6:
                break
            _precision, height, width, components = struct.unpack(">BHHB", frame)
            return ImageHeader("jpeg", width, height, components)
        stream.seek(length - 2, 1)
    raise ImageHeaderError("corrupt_image", "JPEG ends before its frame header")
