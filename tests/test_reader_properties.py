"""Whatever mix of good and bad rows a root holds, every image row is accepted or rejected: none vanish."""

import tempfile
from pathlib import Path

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
