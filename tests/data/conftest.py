"""Helpers writing fake dataset files in the exact real formats, by hand (raw scipy.io.savemat,
not through personsearch.data.writers), so the reader tests pin the real files' quirks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image


def save_images(folder: Path, names, size=(200, 120)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size).save(folder / name)


def cell(values) -> np.ndarray:
    array = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        array[index, 0] = value
    return array


def struct(shape, fields, rows) -> np.ndarray:
    array = np.empty(shape, dtype=[(f, object) for f in fields])
    flat = array.reshape(-1)
    for index, row in enumerate(rows):
        flat[index] = row
    return array


def savemat(path: Path, variables: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), variables)


# ---------------------------------------------------------------------------------------------
# PRW by hand

PRW_TRAIN = ["c1s1_000001", "c2s1_000002"]
PRW_TEST = ["c3s2_000003", "c4s1_000004", "c5s1_000005"]
# per frame: (variable name, rows [id, x, y, w, h])
PRW_ANNOTATIONS = {
    "c1s1_000001": ("box_new", [[5, -5, 10.5, 50, 100.7], [-2, 3.7, 2.2, 20.6, 60.9]]),
    "c2s1_000002": ("anno_file", [[5, 100, 20, 30, 80]]),
    "c3s2_000003": ("anno_previous", [[7, 10, 10, 40, 90], [-2, 60, 5, 30, 70]]),
    "c4s1_000004": ("box_new", [[7, -3.5, 0, 40.5, 100], [8, 120, 10, 30, 80]]),
    "c5s1_000005": ("box_new", [[8, 50, 20, 30.9, 80.2]]),
}
# "pid x y w h frame" with CRLF; the second query has a negative x
PRW_QUERY_LINES = [b"7 10 10 40 90 c3s2_000003\r\n", b"8 -5.5 10.25 35.5 80 c4s1_000004\r\n"]


@pytest.fixture
def prw_root(tmp_path: Path) -> Path:
    root = tmp_path / "PRW"
    for name, (var, rows) in PRW_ANNOTATIONS.items():
        savemat(root / "annotations" / f"{name}.jpg.mat", {var: np.array(rows, np.float64)})
    savemat(root / "frame_train.mat", {"img_index_train": cell(PRW_TRAIN)})
    savemat(root / "frame_test.mat", {"img_index_test": cell(PRW_TEST)})
    (root / "query_info.txt").write_bytes(b"".join(PRW_QUERY_LINES))
    save_images(root / "frames", [n + ".jpg" for n in PRW_TRAIN + PRW_TEST])
    return root


# ---------------------------------------------------------------------------------------------
# CUHK-SYSU by hand

def img_struct(images: dict[str, list[list[float]]]) -> np.ndarray:
    rows = []
    for name, boxes in images.items():
        box = struct((1, len(boxes)), ("idlocate", "ishard"),
                     [(np.array([b], np.float64), 0.0) for b in boxes])
        rows.append((name, float(len(boxes)), box))
    return struct((1, len(rows)), ("imname", "nAppear", "box"), rows)


def protocol_struct(entries) -> np.ndarray:
    """entries: (query name, query xywh, [(gallery name, xywh or None), ...])."""
    rows = []
    for index, (name, box, gallery) in enumerate(entries):
        query = struct((1, 1), ("imname", "idlocate", "ishard", "idname"),
                       [(name, np.array([box], np.float64), 0.0, f"p{index}")])
        items = struct((1, len(gallery)), ("imname", "idlocate", "ishard"),
                       [(g, np.zeros((1, 0)) if b is None else np.array([b], np.float64), 0.0)
                        for g, b in gallery])
        rows.append((query, items))
    return struct((1, len(rows)), ("Query", "Gallery"), rows)


def train_struct(identities) -> np.ndarray:
    """identities: [[(image name, xywh), ...], ...] -> K×1 cell of 1×1 structs."""
    cells = []
    for index, scenes in enumerate(identities):
        scene = struct((1, len(scenes)), ("imname", "idlocate", "ishard"),
                       [(n, np.array([b], np.float64), 0.0) for n, b in scenes])
        cells.append(struct((1, 1), ("idname", "nAppear", "scene"),
                            [(f"p{index}", float(len(scenes)), scene)]))
    return cell(cells)


CUHK_IMAGES = {
    # train images (not in the pool); s2's second box has zero width and is dropped
    "s9.jpg": [[10, 10, 30, 60], [50, 10, 30, 60]],
    "s2.jpg": [[10.7, 20.2, 30.9, 40.5], [5, 5, 0, 40], [60, 10, 20, 50]],
    # pool images
    "s5.jpg": [[10.7, 20.2, 30.9, 40.5], [100, 10, 25, 60]],
    "s3.jpg": [[20, 20, 30, 70]],
    "s4.jpg": [[40, 30, 30, 70], [20, 20, 30, 70]],
    "s6.jpg": [[0, 0, 40, 80]],
}
CUHK_POOL = ["s5.jpg", "s3.jpg", "s4.jpg", "s6.jpg"]
CUHK_TRAIN_IDS = [[("s2.jpg", [10.2, 20.9, 30.1, 40.0]), ("s9.jpg", [50, 10, 30, 60])],
                  [("s9.jpg", [10, 10, 30, 60])]]
CUHK_TESTG50 = [
    ("s5.jpg", [10.7, 20.2, 30.9, 40.5], [("s3.jpg", [20, 20, 30, 70]), ("s6.jpg", None),
                                           ("s4.jpg", [20, 20, 30, 70])]),  # after a negative
    ("s4.jpg", [40, 30, 30, 70], [("s6.jpg", [0, 0, 40, 80]), ("s5.jpg", None)]),
]
CUHK_TESTG100 = [
    ("s5.jpg", [10.7, 20.2, 30.9, 40.5], [("s3.jpg", [20, 20, 30, 70]),
                                           ("s4.jpg", [20.5, 20, 30, 70]), ("s6.jpg", None)]),
    ("s4.jpg", [40, 30, 30, 70], [("s6.jpg", [0, 0, 40, 80]), ("s5.jpg", None),
                                   ("s3.jpg", None)]),
]


@pytest.fixture
def cuhk_root(tmp_path: Path) -> Path:
    root = tmp_path / "CUHK-SYSU"
    annotation = root / "annotation"
    savemat(annotation / "Images.mat", {"Img": img_struct(CUHK_IMAGES)})
    savemat(annotation / "pool.mat", {"pool": cell(CUHK_POOL)})
    savemat(annotation / "test" / "train_test" / "Train.mat",
            {"Train": train_struct(CUHK_TRAIN_IDS)})
    savemat(annotation / "test" / "train_test" / "TestG50.mat",
            {"TestG50": protocol_struct(CUHK_TESTG50)})
    savemat(annotation / "test" / "train_test" / "TestG100.mat",
            {"TestG100": protocol_struct(CUHK_TESTG100)})
    savemat(annotation / "test" / "subset" / "Occlusion.mat",
            {"Occlusion1": protocol_struct(CUHK_TESTG100[1:])})
    save_images(root / "Image" / "SSM", list(CUHK_IMAGES))
    return root


@pytest.fixture
def fakes():
    """This module's builders and constants (tests/ has no packages to import them from).
    Built from this module's globals: ``sys.modules["conftest"]`` may be another folder's
    conftest in a full run."""
    import types

    return types.SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("__")})
