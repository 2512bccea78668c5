"""COCO-style JSON reader (the format of the mmdetection-based CGPS / DICL; docs/datasets.md
§3).

Layout under ``root`` (our convention; DICL's ``train_pid.json`` / ``test_pid.json`` fit it
after renaming, the images linked or copied into ``images/``)::

    images/<file_name>                    every image (file_name may contain sub-folders)
    annotations/train.json                training images
    annotations/gallery.json              gallery (test) images
    annotations/query.json                one annotation per query (its image may repeat)

Each JSON: ``images[] = {id, file_name, width, height[, camera_id]}``, ``annotations[] = {id,
image_id, bbox [x, y, w, h], area, category_id, iscrowd, person_id}``, optional
``categories[]``.

Reading rules (mmdetection's ``CocoDataset``):

- an annotation is skipped when ``ignore`` or ``iscrowd`` is set, when its box clipped to the
  image is empty, when ``area <= 0`` (area defaults to w*h), when w < 1 or h < 1, or when
  ``categories`` lists a "person" category and the annotation's ``category_id`` is another one;
- box = float32 [x, y, x + w, y + h] (no truncation, no +1);
- train split: images shorter or narrower than 32 px and images left without a box are dropped
  (mmdetection's ``_filter_imgs``); gallery images are all kept;
- query split: one record per annotation, in annotation order; a skipped query annotation is an
  error;
- ``person_id``: the raw id; negative (DICL: -1 train, -2 test) or missing -> -1;
- ``camera_id``: the image's optional ``camera_id`` field, else 0;
- ``width``/``height`` come from the JSON and must equal the image file's header size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from personsearch.data.check import ProblemLog, image_size, report_duplicates
from personsearch.data.records import UNLABELED, SceneRecord

SPLIT_FILES = {"train": "train.json", "gallery": "gallery.json", "query": "query.json"}
MIN_IMAGE_SIZE = 32


def json_path(root: str | Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    return Path(root) / "annotations" / SPLIT_FILES[split]


def _load_json(path: Path, log: ProblemLog) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        log.error(path, "file is missing")
        return None
    except (OSError, ValueError) as error:
        log.error(path, f"unreadable JSON ({type(error).__name__}: {error})")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        log.error(path, "expected an object with lists 'images' and 'annotations'")
        return None
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _person_categories(data: dict[str, Any]) -> set | None:
    categories = data.get("categories")
    if not isinstance(categories, list):
        return None
    ids = {c.get("id") for c in categories if isinstance(c, dict) and c.get("name") == "person"}
    return ids or None


def read_split(root: str | Path, split: str, log: ProblemLog,
               read_sizes: bool = True) -> list[SceneRecord]:
    """Records of ``split`` with their TRUE ids (-1 unlabeled)."""
    root = Path(root)
    path = json_path(root, split)
    data = _load_json(path, log)
    if data is None:
        return []
    images: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    for index, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and isinstance(image.get("file_name"), str)
                and _number(image.get("width")) and _number(image.get("height"))
                and "id" in image):
            log.error(path, f"image {index}: needs id, file_name, width and height")
            continue
        if image["id"] in images:
            log.error(path, f"image {index}: duplicate image id {image['id']!r}")
            continue
        images[image["id"]] = image
        order.append(image["id"])
    report_duplicates([images[i]["file_name"] for i in order], path, "image", log)

    persons = _person_categories(data)
    kept: list[tuple[Any, np.ndarray, int]] = []  # (image id, box, person id)
    for index, ann in enumerate(data["annotations"]):
        where = f"annotation {index}"
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            log.error(path, f"{where}: missing or unknown image_id")
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            log.error(path, f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
            continue
        image = images[ann["image_id"]]
        x, y, w, h = (float(v) for v in bbox)
        inter_w = max(0.0, min(x + w, image["width"]) - max(x, 0.0))
        inter_h = max(0.0, min(y + h, image["height"]) - max(y, 0.0))
        area = ann.get("area", w * h)
        reason = None
        if ann.get("ignore", False) or ann.get("iscrowd", False):
            reason = "ignore/iscrowd"
        elif inter_w * inter_h == 0:
            reason = "box does not overlap the image"
        elif not _number(area) or area <= 0 or w < 1 or h < 1:
            reason = "zero or negative size"
        elif persons is not None and ann.get("category_id") not in persons:
            reason = f"category {ann.get('category_id')!r} is not person"
        if reason is not None:
            message = f"{where} ({image['file_name']}) bbox {bbox}: {reason} (skipped)"
            log.error(path, message) if split == "query" else log.warn(path, message)
            continue
        pid = ann.get("person_id", UNLABELED)
        if not (isinstance(pid, int) and not isinstance(pid, bool)):
            log.error(path, f"{where}: person_id must be an integer, got {pid!r}")
            continue
        if split == "query" and pid < 0:
            log.error(path, f"{where}: query without identity (person_id {pid})")
            continue
        box = np.array([x, y, x + w, y + h], np.float32)
        kept.append((ann["image_id"], box, max(pid, UNLABELED)))

    def record(image_id, boxes, ids, index) -> SceneRecord:
        image = images[image_id]
        image_path = root / "images" / image["file_name"]
        if read_sizes:
            header = image_size(image_path, log)
            if header != (0, 0) and header != (int(image["width"]), int(image["height"])):
                log.error(path, f"image {image['file_name']}: JSON size {image['width']}x"
                                f"{image['height']} but the file is {header[0]}x{header[1]}")
        camera = image.get("camera_id", 0)
        return SceneRecord(image_path=str(image_path), image_name=image["file_name"],
                           width=int(image["width"]), height=int(image["height"]),
                           boxes=boxes, person_ids=ids,
                           camera_id=int(camera) if _number(camera) else 0, image_index=index)

    if split == "query":
        return [record(image_id, box[None], [pid], index)
                for index, (image_id, box, pid) in enumerate(kept)]
    boxes_of: dict[Any, list[np.ndarray]] = {i: [] for i in order}
    ids_of: dict[Any, list[int]] = {i: [] for i in order}
    for image_id, box, pid in kept:
        boxes_of[image_id].append(box)
        ids_of[image_id].append(pid)
    records: list[SceneRecord] = []
    for image_id in order:
        image = images[image_id]
        if split == "train":
            if min(image["width"], image["height"]) < MIN_IMAGE_SIZE:
                log.warn(path, f"image {image['file_name']}: smaller than {MIN_IMAGE_SIZE} px "
                               f"(dropped)")
                continue
            if not boxes_of[image_id]:
                log.warn(path, f"image {image['file_name']}: no box (dropped)")
                continue
        boxes = np.asarray(boxes_of[image_id], np.float32).reshape(-1, 4)
        records.append(record(image_id, boxes, ids_of[image_id], len(records)))
    return records
