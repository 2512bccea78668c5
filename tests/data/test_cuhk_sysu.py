from pathlib import Path

import numpy as np
import pytest

from personsearch.data import load_cuhk_protocol, load_split, load_train_identities
from personsearch.errors import DatasetError



def test_train_is_sorted_difference_and_zero_size_box_dropped(cuhk_root: Path) -> None:
    train = load_split("cuhk-sysu", cuhk_root, "train")
    assert [r.image_name for r in train] == ["s2.jpg", "s9.jpg"]
    # [10.7, 20.2, 30.9, 40.5] -> int32 [10, 20, 30, 40] -> x2 = 40, y2 = 60; w = 0 dropped
    np.testing.assert_array_equal(train[0].boxes, [[10, 20, 40, 60], [60, 10, 80, 60]])
    assert train[0].boxes.dtype == np.float32
    assert all((r.person_ids == -1).all() for r in train)
    assert all(r.camera_id == 0 for r in train)


def test_train_identities_match_int32_xywh_exactly(cuhk_root: Path) -> None:
    ids = load_train_identities("cuhk-sysu", cuhk_root)
    # s2: Train scene [10.2, 20.9, 30.1, 40.0] -> int32 equals the box's int32 -> identity 0
    # s9: [10,10,30,60] is identity 1, [50,10,30,60] identity 0
    assert [i.tolist() for i in ids] == [[0, -1], [1, 0]]


def test_gallery_pool_order_and_testg50_ids(cuhk_root: Path, fakes) -> None:
    gallery = load_split("cuhk-sysu", cuhk_root, "gallery")
    assert [r.image_name for r in gallery] == fakes.CUHK_POOL
    assert [r.person_ids.tolist() for r in gallery] == [[0, -1], [0], [1, -1], [1]]
    # the s4 positive listed after a negative is not labeled (SeqNet stops at the first empty)
    np.testing.assert_array_equal(gallery[0].boxes, [[10, 20, 40, 60], [100, 10, 125, 70]])
    assert [r.image_index for r in gallery] == [0, 1, 2, 3]


def test_queries_testg50_order_and_box_conversion(cuhk_root: Path) -> None:
    queries = load_split("cuhk-sysu", cuhk_root, "query")
    assert [q.image_name for q in queries] == ["s5.jpg", "s4.jpg"]
    # truncate first, then add: 10+30 = 40 (adding first would give int(41.6) = 41)
    np.testing.assert_array_equal(queries[0].boxes, [[10, 20, 40, 60]])
    np.testing.assert_array_equal(queries[1].boxes, [[40, 30, 70, 100]])
    assert [q.person_ids.tolist() for q in queries] == [[0], [1]]


def test_protocol_gallery_entries_and_empty_idlocate(cuhk_root: Path, fakes) -> None:
    protocol = load_cuhk_protocol(cuhk_root, 100)
    assert len(protocol) == 2
    first = protocol[0]
    assert first.query_name == "s5.jpg"
    assert first.query_box.dtype == np.float32
    np.testing.assert_array_equal(first.query_box, [10, 20, 40, 60])
    names = [name for name, _ in first.gallery]
    assert names == ["s3.jpg", "s4.jpg", "s6.jpg"]
    np.testing.assert_array_equal(first.gallery[1][1], [20, 20, 30, 70])  # xywh, truncated
    assert first.gallery[1][1].dtype == np.float64
    assert first.gallery[2][1] is None
    assert [n for n, _ in load_cuhk_protocol(cuhk_root, -1)[0].gallery] == \
        [n for n, _ in fakes.CUHK_TESTG50[0][2]]


def test_occlusion_subset_and_bad_sizes(cuhk_root: Path) -> None:
    subset = load_cuhk_protocol(cuhk_root, 100, subset="occlusion")
    assert [q.query_name for q in subset] == ["s4.jpg"]
    with pytest.raises(DatasetError, match="Resolution.mat: file is missing"):
        load_cuhk_protocol(cuhk_root, 100, subset="resolution")
    with pytest.raises(ValueError):
        load_cuhk_protocol(cuhk_root, 75)
    with pytest.raises(ValueError):
        load_cuhk_protocol(cuhk_root, 500, subset="occlusion")
    with pytest.raises(DatasetError, match="TestG500.mat"):
        load_cuhk_protocol(cuhk_root, 500)


def test_protocol_image_missing_from_images_mat(cuhk_root: Path, fakes) -> None:
    entries = [("s5.jpg", [10, 20, 30, 40], [("s77.jpg", [1, 1, 5, 5])])]
    fakes.savemat(cuhk_root / "annotation/test/train_test/TestG50.mat",
            {"TestG50": fakes.protocol_struct(entries)})
    with pytest.raises(DatasetError, match=r"TestG50\.mat: entry 0 gallery item 0.*s77\.jpg"):
        load_split("cuhk-sysu", cuhk_root, "gallery")


def test_image_without_positive_box_raises(cuhk_root: Path, fakes) -> None:
    fakes.savemat(cuhk_root / "annotation/Images.mat",
                  {"Img": fakes.img_struct({"s1.jpg": [[1, 1, 0, 5]]})})
    with pytest.raises(DatasetError, match=r"Images\.mat: entry 0 \(s1\.jpg\): no box"):
        load_split("cuhk-sysu", cuhk_root, "train")


def test_missing_image_raises_naming_it(cuhk_root: Path) -> None:
    (cuhk_root / "Image" / "SSM" / "s3.jpg").unlink()
    with pytest.raises(DatasetError, match=r"s3\.jpg: image file is missing"):
        load_split("cuhk-sysu", cuhk_root, "gallery")
