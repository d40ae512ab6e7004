import os
from pathlib import Path

import pytest

from mura.config import DataConfig
from mura.reader import REASONS, MuraLayoutError, read_mura
from tests.trees import Tree, jpeg_bytes, png_bytes

GOOD = "train/XR_HAND/patient00001/study1_positive/image1.png"
GOOD_VALID = "valid/XR_WRIST/patient00009/study1_negative/image1.png"


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
