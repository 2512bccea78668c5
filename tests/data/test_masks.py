from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personsearch.data import SceneRecord, load_person_masks
from personsearch.errors import DatasetError


def record(boxes=2) -> SceneRecord:
    return SceneRecord(image_path="/x/c1s1_000001.jpg", image_name="c1s1_000001.jpg", width=8,
                       height=6, boxes=np.zeros((boxes, 4)), person_ids=np.full(boxes, -1))


def test_label_map_read_back(tmp_path: Path) -> None:
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 2:4] = 1
    labels[4:, 5:] = 2
    (tmp_path / "masks").mkdir()
    Image.fromarray(labels, mode="L").save(tmp_path / "masks" / "c1s1_000001.png")
    np.testing.assert_array_equal(load_person_masks(tmp_path, record()), labels)


def test_missing_mask_is_none(tmp_path: Path) -> None:
    assert load_person_masks(tmp_path, record()) is None


def test_wrong_size_label_or_mode_raise(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    path = tmp_path / "masks" / "c1s1_000001.png"
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="c1s1_000001.png: mask is 8x5"):
        load_person_masks(tmp_path, record())
    Image.fromarray(np.full((6, 8), 3, np.uint8)).save(path)
    with pytest.raises(DatasetError, match="label 3 but the image has only 2 boxes"):
        load_person_masks(tmp_path, record())
    Image.new("RGB", (8, 6)).save(path)
    with pytest.raises(DatasetError, match="8-bit single-channel"):
        load_person_masks(tmp_path, record())
