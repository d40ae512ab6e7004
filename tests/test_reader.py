import os
import tracemalloc
from pathlib import Path

import pytest

from mura.config import DataConfig
from mura.reader import MAX_LINE_BYTES, REASONS, MuraLayoutError, read_mura
from tests.trees import Tree, jpeg_bytes, png_bytes

GOOD = "train/XR_HAND/patient00001/study1_positive/image1.png"
GOOD_VALID = "valid/XR_WRIST/patient00009/study1_negative/image1.png"
GOOD_2 = "train/XR_HAND/patient00002/study1_negative/image1.png"


def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "data").labeled_image(GOOD).labeled_image(GOOD_VALID, split="valid")


def reasons(root: Path) -> list[str]:
    return [r.reason for r in read_mura(root, progress=False).rejected]


def test_a_clean_tree_is_read_into_records(tmp_path: Path) -> None:
    index = read_mura(tree(tmp_path).write(), progress=False)
    assert index.rejected == []
    assert index.image_rows == 2
    record, valid = index.images
    assert record.path == f"{index.dataset_dir}/{GOOD}"
    assert record.source_path == f"MURA-v1.1/{GOOD}"
    assert (record.source_split, record.body_part, record.patient_id) == ("train", "XR_HAND", "patient00001")
    assert record.study_id == "XR_HAND/patient00001/study1"
    assert (record.image_index, record.label) == (1, 1)
    assert (record.format, record.width, record.height, record.channels) == ("png", 12, 9, 1)
    assert record.split in ("train", "eval")
    assert (valid.split, valid.label) == ("test", 0)


def test_the_dataset_folder_itself_is_accepted_as_root(tmp_path: Path) -> None:
    root = tree(tmp_path).write()
    assert len(read_mura(root / "MURA-v1.1", progress=False).images) == 2


def test_a_missing_csv_is_a_layout_error_naming_it(tmp_path: Path) -> None:
    root = tree(tmp_path).write()
    (root / "MURA-v1.1" / "valid_labeled_studies.csv").unlink()
    with pytest.raises(MuraLayoutError, match=r"valid_labeled_studies\.csv"):
        read_mura(root, progress=False)


def test_malformed_rows(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.study("", 0, raw="MURA-v1.1/train/XR_HAND/patient00002/study1_negative/,maybe")
    t.study("", 0, raw="MURA-v1.1/train/XR_HAND/patient00002/study1_negative/")
    t.image("", raw="MURA-v1.1/train/XR_HAND/patient00001/study1_positive/image2.png,extra")
    t.image("", raw="")
    assert sorted(reasons(t.write())) == ["malformed_row"] * 4


def test_a_header_row_is_rejected_not_silently_skipped(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.rows["train_image_paths.csv"].insert(0, "path")
    assert reasons(t.write()) == ["bad_prefix"]


@pytest.mark.parametrize(
    "raw",
    [
        "MURA-v1.1/../../etc/passwd",
        "MURA-v1.1/train/XR_HAND/patient00001/../../../../secret/image1.png",
        "/etc/passwd",
        "C:/MURA-v1.1/train/XR_HAND/patient00001/study1_positive/image1.png",
    ],
)
def test_paths_climbing_out_are_rejected_without_touching_disk(tmp_path: Path, raw: str) -> None:
    t = tree(tmp_path)
    t.image("", raw=raw)
    assert reasons(t.write()) == ["outside_root"]


def test_a_symlink_leading_out_of_the_root_is_never_opened(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    t = tree(tmp_path)
    folder = "train/XR_HAND/patient00003/study1_negative"
    t.study(folder, 0).image(f"{folder}/image1.png", data=b"")
    link = t.dataset / folder / "image1.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    before = os.stat(outside).st_atime_ns
    index = read_mura(t.write(), progress=False)
    assert [r.reason for r in index.rejected] == ["outside_root"]
    assert os.stat(outside).st_atime_ns == before


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    t = tree(tmp_path)
    folder = "train/XR_HAND/patient00003/study1_negative"
    t.study(folder, 0).image(f"{folder}/image1.png", data=b"")
    link = t.dataset / folder / "image1.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(t.dataset / GOOD)
    assert len(read_mura(t.write(), progress=False).images) == 3


def test_path_shape_prefix_split_and_body_part(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.image("", raw="MURA-v1.0/train/XR_HAND/patient00001/study1_positive/image3.png")
    t.image("train/XR_HAND/patient00001/study1_positive/picture.png")
    t.image("valid/XR_HAND/patient00001/study1_positive/image4.png")  # listed in train's CSV
    t.study("train/XR_ANKLE/patient00004/study1_positive", 1)
    t.image("train/XR_ANKLE/patient00004/study1_positive/image1.png")
    got = read_mura(t.write(), progress=False).rejected
    assert sorted(r.reason for r in got) == [
        "bad_prefix",
        "malformed_path",
        "unknown_body_part",
        "unknown_body_part",
        "wrong_split",
    ]
    assert {r.body_part for r in got if r.reason == "wrong_split"} == {"XR_HAND"}


def test_duplicate_rows_keep_the_first(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.image(GOOD)
    t.study(GOOD.rsplit("/", 1)[0], 1)
    index = read_mura(t.write(), progress=False)
    assert [r.reason for r in index.rejected] == ["duplicate_row", "duplicate_row"]
    assert len(index.images) == 2


def test_an_image_whose_study_has_no_label_row(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.image("train/XR_HAND/patient00005/study1_negative/image1.png")
    assert reasons(t.write()) == ["unlabeled_study"]


def test_a_label_disagreeing_with_the_folder_rejects_the_study_and_its_images(tmp_path: Path) -> None:
    t = tree(tmp_path)
    folder = "train/XR_ELBOW/patient00006/study1_negative"
    t.study(folder, 1).image(f"{folder}/image1.png").image(f"{folder}/image2.png")
    got = read_mura(t.write(), progress=False).rejected
    assert [(r.reason, r.csv_file) for r in got] == [
        ("label_mismatch", "train_labeled_studies.csv"),
        ("label_mismatch", "train_image_paths.csv"),
        ("label_mismatch", "train_image_paths.csv"),
    ]


def test_a_valid_image_of_a_train_patient_stays_out_of_test(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.labeled_image("valid/XR_HAND/patient00001/study2_negative/image1.png", split="valid")
    assert reasons(t.write()) == ["patient_in_both_splits"]


def test_a_study_without_images(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.study("train/XR_FINGER/patient00007/study1_negative", 0)
    got = read_mura(t.write(), progress=False).rejected
    assert [(r.reason, r.csv_file, r.line) for r in got] == [("study_without_images", "train_labeled_studies.csv", 2)]
    assert read_mura(t.root, progress=False).rejected_fraction == 0.0  # images are what the bound counts


def test_missing_files_and_bad_bytes(tmp_path: Path) -> None:
    t = tree(tmp_path)
    folder = "train/XR_HUMERUS/patient00008/study1_positive"
    t.study(folder, 1)
    t.image(f"{folder}/image1.png", data=b"")
    t.image(f"{folder}/image2.png", data=b"GIF89a not an x-ray")
    t.image(f"{folder}/image3.png", data=png_bytes()[:20])
    t.image(f"{folder}/image4.png", data=jpeg_bytes()[:30])
    (t.dataset / folder / "image5.png").mkdir()
    t.image(f"{folder}/image5.png", data=b"")
    got = read_mura(t.write(), progress=False).rejected
    assert [r.reason for r in got] == [
        "missing_file",
        "not_png_or_jpeg",
        "corrupt_image",
        "corrupt_image",
        "missing_file",
    ]
    assert all(r.body_part == "XR_HUMERUS" for r in got)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file(tmp_path: Path) -> None:
    t = tree(tmp_path)
    (t.dataset / GOOD).chmod(0)
    assert reasons(t.write()) == ["unreadable"]


def test_jpeg_and_rgb_images_are_accepted_with_their_header(tmp_path: Path) -> None:
    t = tree(tmp_path)
    folder = "train/XR_WRIST/patient00010/study1_negative"
    t.study(folder, 0).image(f"{folder}/image1.jpg", data=jpeg_bytes(30, 20, "RGB"))
    t.image(f"{folder}/image2.png", data=png_bytes(7, 5, "RGB"))
    images = read_mura(t.write(), progress=False).images[1:3]
    assert [(i.format, i.width, i.height, i.channels) for i in images] == [("jpeg", 30, 20, 3), ("png", 7, 5, 3)]


def test_every_reason_is_documented() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert all(f"`{reason}`" in readme for reason in REASONS)


def test_rejected_fraction_counts_image_rows(tmp_path: Path) -> None:
    t = tree(tmp_path)
    t.image("train/XR_HAND/patient00005/study1_negative/image1.png")
    index = read_mura(t.write(), DataConfig(), progress=False)
    assert index.image_rows == 3
    assert index.rejected_fraction == pytest.approx(1 / 3)


def test_a_root_given_as_a_uri_is_read_through_tensorflow(tmp_path: Path) -> None:
    root = tree(tmp_path).write()
    index = read_mura(f"file://{root}", progress=False)
    assert index.rejected == []
    assert index.images[0].path == f"file://{root}/MURA-v1.1/{GOOD}"


def write_bytes_csv(root: Path, csv_file: str, content: bytes) -> None:
    (root / "MURA-v1.1" / csv_file).write_bytes(content)


def two_train_images(tmp_path: Path) -> Path:
    return tree(tmp_path).labeled_image(GOOD_2).write()


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (b"MURA-v1.1/train/XR_HAND/p\xffatient.png", "not valid UTF-8 at byte 26"),
        (b"\xff\xfeM\x00U\x00", "NUL byte at byte 4"),
        (b"MURA-v1.1/train/XR_HAND/\x00.png", "NUL byte at byte 25"),
        (f"MURA-v1.1/{GOOD},1,extra".encode(), "3 columns, expected 1"),
        (b"", "blank line"),
        (b'""', "empty path"),
        (b"x" * 10_000_000, f"line of 10000000 bytes, longer than the {MAX_LINE_BYTES}-byte limit"),
    ],
)
def test_a_bad_image_row_is_malformed_and_the_rows_after_it_are_read(tmp_path: Path, bad: bytes, detail: str) -> None:
    root = two_train_images(tmp_path)
    write_bytes_csv(
        root, "train_image_paths.csv", f"MURA-v1.1/{GOOD}\n".encode() + bad + f"\nMURA-v1.1/{GOOD_2}\n".encode()
    )
    index = read_mura(root, progress=False)
    assert [(r.reason, r.csv_file, r.line, r.detail) for r in index.rejected] == [
        ("malformed_row", "train_image_paths.csv", 2, detail)
    ]
    assert len(index.rejected[0].path) < 300
    assert [(i.source_split, i.csv_line) for i in index.images] == [("train", 1), ("train", 3), ("valid", 1)]


def test_a_bad_study_row_is_malformed_and_the_rows_after_it_are_read(tmp_path: Path) -> None:
    root = two_train_images(tmp_path)
    rows = [f"MURA-v1.1/{GOOD.rsplit('/', 1)[0]}/,1", f"MURA-v1.1/{GOOD_2.rsplit('/', 1)[0]}/,0"]
    write_bytes_csv(root, "train_labeled_studies.csv", f"{rows[0]}\n\xe9t\xe9,1\n{rows[1]}\n".encode("latin-1"))
    index = read_mura(root, progress=False)
    assert [(r.reason, r.csv_file, r.line, r.detail, r.path) for r in index.rejected] == [
        ("malformed_row", "train_labeled_studies.csv", 2, "not valid UTF-8 at byte 1", "\\xe9t\\xe9,1")
    ]
    assert len(index.images) == 3


def test_a_one_line_file_of_64_mib_is_read_in_bounded_memory(tmp_path: Path) -> None:
    root = tree(tmp_path).write()
    write_bytes_csv(root, "valid_image_paths.csv", b"MURA-v1.1/" * (64 * 1024 * 1024 // 10))
    tracemalloc.start()
    try:
        index = read_mura(root, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert [(r.reason, r.csv_file, r.line) for r in index.rejected] == [
        ("malformed_row", "valid_image_paths.csv", 1),
        ("study_without_images", "valid_labeled_studies.csv", 1),
    ]
    assert index.rejected[0].path.endswith("...")


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbf{a}\n{b}\n",  # a BOM, as a spreadsheet re-saves it
        b"{a}\r\n{b}\r\n",
        b"{a}\r{b}\r",  # classic Mac line endings
        b"{a}\n{b}",  # cut after the last row's path
        b'"{a}"\n{b}\n\n',  # a quoted field; a blank last line is a row, rejected
    ],
)
def test_boms_line_endings_quotes_and_a_missing_last_newline_are_read(tmp_path: Path, content: bytes) -> None:
    root = two_train_images(tmp_path)
    paths = {"a": f"MURA-v1.1/{GOOD}", "b": f"MURA-v1.1/{GOOD_2}"}
    write_bytes_csv(root, "train_image_paths.csv", content.decode().format(**paths).encode())
    index = read_mura(root, progress=False)
    assert [(i.source_path, i.csv_line) for i in index.images[:2]] == [(paths["a"], 1), (paths["b"], 2)]
    assert [(r.line, r.detail) for r in index.rejected] == ([(3, "blank line")] if content.endswith(b"\n\n") else [])


def test_a_crlf_split_across_read_chunks_is_one_line_ending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mura.reader._CHUNK_BYTES", len(f"MURA-v1.1/{GOOD}\r"))
    root = two_train_images(tmp_path)
    write_bytes_csv(root, "train_image_paths.csv", f"MURA-v1.1/{GOOD}\r\nMURA-v1.1/{GOOD_2}\r\n".encode())
    index = read_mura(root, progress=False)
    assert index.rejected == []
    assert [i.csv_line for i in index.images] == [1, 2, 1]


def test_empty_csvs_are_read_as_no_rows(tmp_path: Path) -> None:
    index = read_mura(Tree(tmp_path / "data").write(), progress=False)
    assert (index.images, index.rejected, index.image_rows, index.study_rows) == ([], [], 0, 0)


@pytest.mark.parametrize(
    ("data", "missing"),
    [(png_bytes()[:-12], "IEND chunk"), (png_bytes()[:-1], "IEND chunk"), (jpeg_bytes()[:-2], "EOI marker")],
)
def test_a_truncated_image_with_an_intact_header_is_corrupt(tmp_path: Path, data: bytes, missing: str) -> None:
    t = tree(tmp_path)
    folder = "train/XR_FOREARM/patient00011/study1_negative"
    t.study(folder, 0).image(f"{folder}/image1.png", data=data).image(f"{folder}/image2.jpg", data=jpeg_bytes())
    index = read_mura(t.write(), progress=False)
    assert [(r.reason, r.line, r.body_part) for r in index.rejected] == [("corrupt_image", 2, "XR_FOREARM")]
    assert index.rejected[0].detail.startswith(f"truncated: no {missing}")
    assert [i.csv_line for i in index.images] == [1, 3, 1]


def test_a_truncated_image_under_a_uri_root_is_corrupt(tmp_path: Path) -> None:
    t = tree(tmp_path)
    folder = "train/XR_FOREARM/patient00011/study1_negative"
    t.study(folder, 0).image(f"{folder}/image1.png", data=png_bytes()[:-12])
    index = read_mura(f"file://{t.write()}", progress=False)
    assert [(r.reason, r.detail) for r in index.rejected] == [
        ("corrupt_image", "truncated: no IEND chunk at the end of the PNG")
    ]
    assert len(index.images) == 2
