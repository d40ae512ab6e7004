import io

import pytest
from PIL import Image

from mura.image_header import TAIL_BYTES, ImageHeaderError, check_complete, read_image_header
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


def noisy(image_format: str, size: int = 200) -> bytes:
    """An image far longer than TAIL_BYTES, so the end check must seek."""
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).save(buffer, format=image_format)
    assert buffer.tell() > 2 * TAIL_BYTES
    return buffer.getvalue()


class CountingBytesIO(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


@pytest.mark.parametrize(
    ("data", "image_format"),
    [
        (png_bytes(), "png"),
        (png_bytes(7, 5, "RGB"), "png"),
        (noisy("PNG"), "png"),
        (jpeg_bytes(), "jpeg"),
        (noisy("JPEG"), "jpeg"),
        (jpeg_bytes() + b"\x00" * 1000, "jpeg"),  # padded to a block after EOI
        (jpeg_bytes() + b"\r\n", "jpeg"),
    ],
)
def test_a_complete_image_passes_the_end_check_reading_only_its_tail(data: bytes, image_format: str) -> None:
    stream = CountingBytesIO(data)
    check_complete(stream, image_format)
    assert stream.bytes_read <= TAIL_BYTES


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        (png_bytes()[:-1], "IEND"),
        (png_bytes()[:-12], "IEND"),
        (noisy("PNG")[:5000], "IEND"),
        (png_bytes() + b"\x00", "IEND"),  # a PNG must end with IEND, nothing after
        (jpeg_bytes()[:-1], "EOI"),
        (jpeg_bytes()[:-2], "EOI"),
        (noisy("JPEG")[:5000], "EOI"),
        (jpeg_bytes()[:-2] + b"\x00" * 10, "EOI"),
        (jpeg_bytes() + b"\x00" * TAIL_BYTES, "EOI"),  # padding longer than the tail read is not trusted
    ],
)
def test_a_truncated_image_with_an_intact_header_is_corrupt(data: bytes, missing: str) -> None:
    h = header(data)
    with pytest.raises(ImageHeaderError, match=f"truncated: no {missing}") as raised:
        check_complete(io.BytesIO(data), h.format)
    assert raised.value.reason == "corrupt_image"
