from pathlib import Path

import numpy as np
import pytest

from personsearch.data import load_split, load_train_identities, slot_offsets
from personsearch.data.prw import convert_frame_boxes, convert_query_box
from personsearch.errors import DatasetError



def test_train_split_order_boxes_and_no_ids(prw_root: Path, fakes) -> None:
    train = load_split("prw", prw_root, "train")
    assert [r.image_name for r in train] == [n + ".jpg" for n in fakes.PRW_TRAIN]
    # x=-5, w=50 -> clipped in xywh form first -> x1 0, x2 50; 10.5+100.7=111.2 -> 111
    np.testing.assert_array_equal(train[0].boxes, [[0, 10, 50, 111], [3, 2, 24, 63]])
    np.testing.assert_array_equal(train[1].boxes, [[100, 20, 130, 100]])  # 'anno_file'
    assert train[0].boxes.dtype == np.float32
    assert all((r.person_ids == -1).all() for r in train)  # weakly supervised: no ids
    assert [r.camera_id for r in train] == [1, 2]
    assert [r.image_index for r in train] == [0, 1]
    assert (train[0].width, train[0].height) == (200, 120)


def test_train_identities_raw_ids_unlabeled_minus_one(prw_root: Path) -> None:
    ids = load_train_identities("prw", prw_root)
    assert [i.tolist() for i in ids] == [[5, -1], [5]]
    assert ids[0].dtype == np.int64


def test_gallery_variable_names_and_negative_boxes(prw_root: Path, fakes) -> None:
    gallery = load_split("prw", prw_root, "gallery")
    assert [r.image_name for r in gallery] == [n + ".jpg" for n in fakes.PRW_TEST]
    np.testing.assert_array_equal(gallery[0].boxes, [[10, 10, 50, 100], [60, 5, 90, 75]])
    assert gallery[0].person_ids.tolist() == [7, -1]  # 'anno_previous', -2 -> -1
    np.testing.assert_array_equal(gallery[1].boxes, [[0, 0, 40, 100], [120, 10, 150, 90]])
    assert gallery[1].person_ids.tolist() == [7, 8]
    np.testing.assert_array_equal(gallery[2].boxes, [[50, 20, 80, 100]])
    assert [r.camera_id for r in gallery] == [3, 4, 5]


def test_queries_crlf_and_query_conversion_order(prw_root: Path) -> None:
    queries = load_split("prw", prw_root, "query")
    assert [q.image_name for q in queries] == ["c3s2_000003.jpg", "c4s1_000004.jpg"]
    np.testing.assert_array_equal(queries[0].boxes, [[10, 10, 50, 100]])
    # -5.5 + 35.5 = 30 computed before clipping -> [0, 10, 30, 90] (a gallery box gives x2 35)
    np.testing.assert_array_equal(queries[1].boxes, [[0, 10, 30, 90]])
    assert [q.person_ids.tolist() for q in queries] == [[7], [8]]
    assert [q.camera_id for q in queries] == [3, 4]


def test_conversion_functions_hand_computed() -> None:
    np.testing.assert_array_equal(convert_frame_boxes(np.array([[-5, 3, 50, 10.9]])),
                                  [[0, 3, 50, 13]])
    np.testing.assert_array_equal(convert_query_box(-5, 3, 50, 10.9), [0, 3, 45, 13])


def test_slot_offsets(prw_root: Path) -> None:
    offsets = slot_offsets(load_split("prw", prw_root, "train"))
    assert offsets.dtype == np.int64
    assert offsets.tolist() == [0, 2, 3]
    assert slot_offsets([]).tolist() == [0]


def test_missing_image_raises_naming_it(prw_root: Path) -> None:
    (prw_root / "frames" / "c4s1_000004.jpg").unlink()
    with pytest.raises(DatasetError, match="c4s1_000004.jpg.*missing"):
        load_split("prw", prw_root, "gallery")


def test_annotation_without_known_variable_raises(prw_root: Path, fakes) -> None:
    fakes.savemat(prw_root / "annotations" / "c1s1_000001.jpg.mat", {"boxes": np.zeros((1, 5))})
    with pytest.raises(DatasetError, match=r"c1s1_000001\.jpg\.mat.*'box_new'"):
        load_split("prw", prw_root, "train")


def test_query_line_malformed_names_line(prw_root: Path) -> None:
    (prw_root / "query_info.txt").write_bytes(b"7 10 10 40 90 c3s2_000003\r\n8 1 2 3\r\n")
    with pytest.raises(DatasetError, match=r"query_info\.txt: line 2"):
        load_split("prw", prw_root, "query")


def test_bad_split_file_and_format() -> None:
    with pytest.raises(ValueError):
        load_split("market", "/nonexistent", "train")
    with pytest.raises(ValueError):
        load_split("prw", "/nonexistent", "test")


def test_missing_split_file_raises(prw_root: Path) -> None:
    (prw_root / "frame_test.mat").unlink()
    with pytest.raises(DatasetError, match="frame_test.mat: file is missing"):
        load_split("prw", prw_root, "gallery")


def test_one_by_n_cell_of_names_also_read(prw_root: Path, fakes) -> None:
    fakes.savemat(prw_root / "frame_train.mat", {"img_index_train": fakes.cell(fakes.PRW_TRAIN).T})
    assert [r.image_name for r in load_split("prw", prw_root, "train")] == \
        [n + ".jpg" for n in fakes.PRW_TRAIN]
