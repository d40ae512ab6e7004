"""Whatever mix of good and bad rows, or bytes, a root holds, every image row is accepted or rejected: none vanish."""

import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from mura.layout import BODY_PARTS
from mura.reader import read_mura
from tests.trees import Tree, png_bytes

ROW_KINDS = (
    "good",
    "missing",
    "not_image",
    "truncated",
    "climbing",
    "unknown_part",
    "unlabeled",
    "duplicate",
    "mislabeled",
    "blank",
)


def add_row(t: Tree, kind: str, n: int, part: str, split: str) -> None:
    folder = f"{split}/{part}/patient{n:05d}/study1_{'positive' if n % 2 else 'negative'}"
    label = n % 2
    path = f"{folder}/image1.png"
    if kind == "good":
        t.study(folder, label, split).image(path, split=split)
    elif kind == "missing":
        t.study(folder, label, split).image(path, data=b"", split=split)
    elif kind == "not_image":
        t.study(folder, label, split).image(path, data=b"hello", split=split)
    elif kind == "truncated":
        t.study(folder, label, split).image(path, data=png_bytes()[:16], split=split)
    elif kind == "climbing":
        t.image("", raw=f"MURA-v1.1/{split}/../../x{n}.png", split=split)
    elif kind == "unknown_part":
        t.image(f"{split}/XR_KNEE/patient{n:05d}/study1_negative/image1.png", split=split)
    elif kind == "unlabeled":
        t.image(path, split=split)
    elif kind == "duplicate":
        t.study(folder, label, split).image(path, split=split).image(path, split=split)
    elif kind == "mislabeled":
        t.study(folder, 1 - label, split).image(path, split=split)
    else:
        t.image("", raw="", split=split)


rows = st.lists(
    st.tuples(st.sampled_from(ROW_KINDS), st.sampled_from(BODY_PARTS), st.sampled_from(("train", "valid"))),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(rows)
def test_accepted_plus_rejected_is_every_image_row(kinds: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Tree(Path(tmp))
        for n, (kind, part, split) in enumerate(kinds, start=1):
            add_row(t, kind, n, part, split)
        root = t.write()
        csv_rows = sum(len(t.rows[f"{s}_image_paths.csv"]) for s in ("train", "valid"))
        index = read_mura(root, progress=False)
        assert index.image_rows == csv_rows
        assert len(index.images) + len(index.rejected_images) == csv_rows
        assert len(index.images) == sum(1 for kind, _, _ in kinds if kind in ("good", "duplicate"))
        assert len(index.rejected) - len(index.rejected_images) <= index.study_rows


CSV_FILES = ("train_image_paths.csv", "train_labeled_studies.csv", "valid_image_paths.csv", "valid_labeled_studies.csv")
GOOD_TRAIN = "train/XR_HAND/patient00001/study1_positive/image1.png"
# Pieces that stress line splitting and decoding; hypothesis joins them with arbitrary bytes.
TRICKY = (
    b"\n",
    b"\r",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\x00",
    b'"',
    b",",
    b"\xff",
    b"\xe2\x82",
    f"MURA-v1.1/{GOOD_TRAIN}".encode(),
)
csv_bytes = st.lists(st.one_of(st.binary(max_size=30), st.sampled_from(TRICKY)), max_size=30).map(b"".join)


def good_root(tmp: str) -> Tree:
    t = Tree(Path(tmp))
    return t.labeled_image(GOOD_TRAIN).labeled_image("valid/XR_WRIST/patient00009/study1_negative/image1.png", "valid")


@settings(max_examples=150, deadline=None)
@given(csv_bytes, st.sampled_from(CSV_FILES), st.sampled_from((1, 2, 7, 1 << 20)))
def test_any_bytes_in_a_csv_are_rows_accepted_or_rejected(data: bytes, csv_file: str, chunk_bytes: int) -> None:
    """A row per line (ended by \\n, \\r\\n or \\r, as bytes.splitlines counts them), whatever the read chunk size."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch("mura.reader._CHUNK_BYTES", chunk_bytes):
        t = good_root(tmp)
        root = t.write()
        (t.dataset / csv_file).write_bytes(data)
        index = read_mura(root, progress=False)
        lines = {name: len((t.dataset / name).read_bytes().splitlines()) for name in CSV_FILES}
        assert index.image_rows == lines["train_image_paths.csv"] + lines["valid_image_paths.csv"]
        assert index.study_rows == lines["train_labeled_studies.csv"] + lines["valid_labeled_studies.csv"]
        assert len(index.images) + len(index.rejected_images) == index.image_rows
        assert all(1 <= r.line <= lines[r.csv_file] for r in index.rejected)


no_line_end = st.binary(max_size=40).filter(lambda line: b"\n" not in line and b"\r" not in line)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), no_line_end), min_size=1, max_size=12))
def test_good_rows_between_garbage_lines_keep_their_line_numbers(lines: list[bytes | None]) -> None:
    """None stands for a good row; any other line is rejected on its own line and the good rows around it read."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Tree(Path(tmp))
        written = []
        for n, line in enumerate(lines, start=1):
            if line is None:
                path = f"train/XR_HAND/patient{n:05d}/study1_negative/image1.png"
                t.labeled_image(path)
                line = f"MURA-v1.1/{path}".encode()
            written.append(line)
        root = t.write()
        (t.dataset / "train_image_paths.csv").write_bytes(b"".join(line + b"\n" for line in written))
        index = read_mura(root, progress=False)
        assert [i.csv_line for i in index.images] == [n for n, line in enumerate(lines, start=1) if line is None]
        assert [r.line for r in index.rejected_images] == [
            n for n, line in enumerate(lines, start=1) if line is not None
        ]
