"""CUHK-SYSU search protocol builder (docs/evaluation.md §1): TestG lists -> SearchProtocol.

Only arrays are built here; the metrics are computed by ``search.search_metrics``.

- For query i the gallery is protocol entry i's list, in protocol order. An entry's box is the
  int32-truncated ``idlocate`` in x, y, w, h: the threshold uses that w, h, the matching box is
  [x, y, x + w, y + h].
- count_gt counts every entry with a box, duplicates included; a duplicated image is walked
  once, with the box of its first entry (SeqNet skips names it has already processed).
- Full set (``full_set=True``, gallery_size -1, fed with TestG50): after the protocol list,
  every other pool image except the query image, in pool order, as negatives.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from personsearch.errors import DatasetError
from personsearch.evaluation.search import SearchProtocol, size_adaptive_iou_threshold


class CuhkQueryLike(Protocol):
    query_name: str
    gallery: list


def xywh_to_int_xyxy(box_xywh: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(x1y1x2y2 float64 of the int32-truncated xywh box, w, h)."""
    x, y, w, h = (int(v) for v in np.asarray(box_xywh, dtype=np.float64).reshape(4).astype(
        np.int32))
    return np.array([x, y, x + w, y + h], dtype=np.float64), w, h


def build_cuhk_sysu_protocol(gallery_names: Sequence[str], queries: Sequence[CuhkQueryLike],
                             full_set: bool = False) -> SearchProtocol:
    """Per-query structures for CUHK-SYSU.

    Args:
        gallery_names: the G pool image names in pool (= gallery split) order.
        queries: protocol entries (``data.load_cuhk_protocol``) in TestG order; with
            ``full_set`` these must be TestG50's.
        full_set: extend each gallery with every other pool image (gallery_size = -1).
    """
    index = {name: g for g, name in enumerate(gallery_names)}
    num_images = len(gallery_names)
    gallery_images, gt_images, gt_boxes, thresholds, count_gt = [], [], [], [], []
    for i, query in enumerate(queries):
        walk: list[int] = []
        seen: set[int] = set()
        query_gt_images, query_gt_boxes, sizes = [], [], []
        num_gt = 0
        for name, box in query.gallery:
            if name not in index:
                raise DatasetError(None, f"protocol query {i} ({query.query_name}): gallery "
                                         f"image {name!r} is not in the gallery split")
            has_gt = box is not None and np.asarray(box).size > 0
            num_gt += int(has_gt)
            image = index[name]
            if image in seen:
                continue
            seen.add(image)
            walk.append(image)
            if has_gt:
                xyxy, w, h = xywh_to_int_xyxy(box)
                query_gt_images.append(image)
                query_gt_boxes.append(xyxy)
                sizes.append((w, h))
        walk_array = np.asarray(walk, dtype=np.int64)
        if full_set:
            if query.query_name not in index:
                raise DatasetError(None, f"protocol query {i}: query image "
                                         f"{query.query_name!r} is not in the gallery split")
            others = np.ones(num_images, dtype=bool)
            others[walk_array] = False
            others[index[query.query_name]] = False
            walk_array = np.concatenate([walk_array, np.flatnonzero(others)])
        sizes_array = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        gallery_images.append(walk_array)
        gt_images.append(np.asarray(query_gt_images, dtype=np.int64))
        gt_boxes.append(np.asarray(query_gt_boxes, dtype=np.float64).reshape(-1, 4))
        thresholds.append(size_adaptive_iou_threshold(sizes_array[:, 0], sizes_array[:, 1]))
        count_gt.append(num_gt)
    return SearchProtocol(gallery_images, gt_images, gt_boxes, thresholds,
                          np.asarray(count_gt, dtype=np.int64))
