import json
from pathlib import Path

import numpy as np
import pytest

from personsearch.data import load_split, load_train_identities
from personsearch.errors import DatasetError


def write_json(root: Path, split: str, images, annotations, categories=None) -> None:
    data = {"images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    path = root / "annotations" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def ann(index, image_id, bbox, pid, **extra):
    return {"id": index, "image_id": image_id, "bbox": bbox, "area": bbox[2] * bbox[3],
            "category_id": 1, "iscrowd": 0, "person_id": pid, **extra}


@pytest.fixture
def coco_root(tmp_path: Path, fakes) -> Path:
    root = tmp_path / "coco"
    images = [{"id": 10, "file_name": "a.jpg", "width": 200, "height": 120, "camera_id": 2},
              {"id": 11, "file_name": "b.jpg", "width": 200, "height": 120},
              {"id": 12, "file_name": "tiny.jpg", "width": 30, "height": 120}]
    train_anns = [ann(0, 10, [5, 6, 20, 50], 3),
                  ann(1, 10, [190, 10, 30, 50], -1),        # partly outside: kept
                  ann(2, 10, [210, 10, 30, 50], 4),         # no overlap: skipped
                  ann(3, 11, [1, 1, 0.5, 50], 4),           # w < 1: skipped
                  ann(4, 11, [1, 1, 20, 50], 5, iscrowd=1),  # crowd: skipped
                  ann(5, 12, [1, 1, 20, 50], 6)]             # image < 32 px: dropped
    write_json(root, "train", images, train_anns, [{"id": 1, "name": "person"}])
    write_json(root, "gallery", images[:2], [ann(0, 11, [1, 2, 20, 50], -2),
                                             ann(1, 11, [40, 2, 20, 50], 7)])
    write_json(root, "query", images[:2], [ann(0, 11, [40, 2, 20, 50], 7),
                                           ann(1, 10, [5, 6, 20, 50], 3)])
    fakes.save_images(root / "images", ["a.jpg", "b.jpg"])
    fakes.save_images(root / "images", ["tiny.jpg"], size=(30, 120))
    return root


def test_train_skip_rules_and_no_ids(coco_root: Path) -> None:
    train = load_split("coco", coco_root, "train")
    assert [r.image_name for r in train] == ["a.jpg"]  # b: no box left, tiny: < 32 px
    np.testing.assert_array_equal(train[0].boxes, [[5, 6, 25, 56], [190, 10, 220, 60]])
    assert train[0].person_ids.tolist() == [-1, -1]
    assert train[0].camera_id == 2
    assert [i.tolist() for i in load_train_identities("coco", coco_root)] == [[3, -1]]


def test_gallery_keeps_images_and_maps_negative_ids(coco_root: Path) -> None:
    gallery = load_split("coco", coco_root, "gallery")
    assert [r.image_name for r in gallery] == ["a.jpg", "b.jpg"]
    assert gallery[0].num_boxes == 0
    assert gallery[1].person_ids.tolist() == [-1, 7]
    assert gallery[1].camera_id == 0


def test_queries_in_annotation_order(coco_root: Path) -> None:
    queries = load_split("coco", coco_root, "query")
    assert [q.image_name for q in queries] == ["b.jpg", "a.jpg"]
    assert [q.person_ids.tolist() for q in queries] == [[7], [3]]
    np.testing.assert_array_equal(queries[0].boxes, [[40, 2, 60, 52]])
    assert [q.image_index for q in queries] == [0, 1]


def test_json_size_must_match_image(coco_root: Path, fakes) -> None:
    fakes.save_images(coco_root / "images", ["b.jpg"], size=(100, 100))
    with pytest.raises(DatasetError, match=r"gallery\.json: image b\.jpg: JSON size 200x120"):
        load_split("coco", coco_root, "gallery")


def test_malformed_json_and_bbox(coco_root: Path) -> None:
    (coco_root / "annotations" / "gallery.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"gallery\.json: unreadable JSON"):
        load_split("coco", coco_root, "gallery")
    write_json(coco_root, "gallery", [{"id": 1, "file_name": "a.jpg", "width": 200,
                                       "height": 120}], [{"image_id": 1, "bbox": [1, 2]}])
    with pytest.raises(DatasetError, match=r"gallery\.json: annotation 0: bbox"):
        load_split("coco", coco_root, "gallery")


def test_skipped_query_annotation_is_an_error(coco_root: Path) -> None:
    write_json(coco_root, "query", [{"id": 1, "file_name": "a.jpg", "width": 200,
                                     "height": 120}], [ann(0, 1, [1, 1, 0, 50], 3)])
    with pytest.raises(DatasetError, match=r"query\.json: annotation 0 \(a\.jpg\)"):
        load_split("coco", coco_root, "query")
