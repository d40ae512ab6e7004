import io

import pytest
from PIL import Image

from mura.image_header import ImageHeaderError, read_image_header
from tests.trees import jpeg_bytes, png_bytes


def header(data: bytes):
    return read_image_header(io.BytesIO(data))


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("P", 3), ("LA", 2), ("RGBA", 4)])
def test_png_sizes_and_channels(mode: str, channels: int) -> None:
    h = header(png_bytes(31, 17, mode))
    assert (h.format, h.width, h.height, h.channels) == ("png", 31, 17, channels)


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3)])
def test_jpeg_sizes_and_channels(mode: str, channels: int) -> None:
    h = header(jpeg_bytes(40, 23, mode))
    assert (h.format, h.width, h.height, h.channels) == ("jpeg", 40, 23, channels)


def test_jpeg_frame_header_after_large_metadata_and_progressive() -> None:
    buffer = io.BytesIO()
    image = Image.new("RGB", (50, 60), 10)
    exif = image.getexif()
    exif[0x010E] = "x" * 30000  # ImageDescription: a big APP1 segment before the frame header
    image.save(buffer, format="JPEG", exif=exif, progressive=True)
    assert (header(buffer.getvalue()).width, header(buffer.getvalue()).height) == (50, 60)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_png_or_jpeg"),
        (b"BM\x00\x00 a bitmap", "not_png_or_jpeg"),
        (png_bytes()[:20], "corrupt_image"),
        (png_bytes()[:8] + b"\x00\x00\x00\x0dIDAT" + b"\x00" * 13, "corrupt_image"),
        (jpeg_bytes()[:4], "corrupt_image"),
        (b"\xff\xd8\x00garbage", "corrupt_image"),
    ],
)
def test_bad_bytes_name_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageHeaderError) as raised:
        header(data)
    assert raised.value.reason == reason


def test_a_zero_sized_png_is_corrupt() -> None:
    data = bytearray(png_bytes(4, 4))
    data[16:20] = b"\x00\x00\x00\x00"  # IHDR width
    with pytest.raises(ImageHeaderError, match="0x4"):
        header(bytes(data))
