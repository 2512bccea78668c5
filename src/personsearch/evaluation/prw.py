"""PRW search protocol builder (docs/evaluation.md §2, §6): records -> SearchProtocol.

For a query (person id p, frame fq, camera cq):

- GT frames: gallery frames != fq whose person ids contain p; the GT box is the first box with
  id p there, int32-truncated; threshold from w = x2 - x1, h = y2 - y1.
- gallery, ``ignore_cam_id=True`` (default; SeqNet, CGPS, DICL, SSL): every frame but fq.
  ``ignore_cam_id=False`` (cross-camera, the original PRW protocol): every frame whose camera
  is not cq. Frames are walked in gallery (frame_test.mat) order; count_gt = GT frames in the
  gallery, detected or not.

Query-from-detection (CGPS/DICL PRW scripts, ``query_feats_from_detections``): the query
feature is the feature of the query frame's own detection with the largest IoU (+1 pixel
convention) with the query box, whatever that IoU. Every detection of that frame is a candidate
(no score threshold). When gallery features are score-weighted the chosen feature is too; a
positive factor on a query's feature does not change its ranking, AP or top-k. A query whose
frame has no detection has no feature: AP 0, no hit, still counted in the means (reported as
``queries_without_query_detection``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from personsearch.data.records import SceneRecord
from personsearch.errors import DatasetError
from personsearch.evaluation.search import (GalleryDetections, SearchProtocol, concat_ranges,
                                            size_adaptive_iou_threshold)


def query_frame_indices(gallery: Sequence[SceneRecord],
                        queries: Sequence[SceneRecord]) -> np.ndarray:
    """int64 [Q] gallery index of each query's frame (DatasetError if one is missing)."""
    index = {record.image_name: g for g, record in enumerate(gallery)}
    frames = []
    for i, query in enumerate(queries):
        if query.image_name not in index:
            raise DatasetError(None, f"query {i}: frame {query.image_name!r} is not a gallery "
                                     f"(test) frame")
        frames.append(index[query.image_name])
    return np.asarray(frames, dtype=np.int64)


def build_prw_protocol(gallery: Sequence[SceneRecord], queries: Sequence[SceneRecord],
                       ignore_cam_id: bool = True) -> SearchProtocol:
    """Per-query structures for PRW (see module docstring)."""
    num_images = len(gallery)
    cameras = np.asarray([record.camera_id for record in gallery], dtype=np.int64)
    query_frames = query_frame_indices(gallery, queries)
    # person id -> [(frame, int32 box of its first occurrence there)] in frame order
    occurrences: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for frame, record in enumerate(gallery):
        seen_in_frame: set[int] = set()
        for box, pid in zip(record.boxes, record.person_ids):
            pid = int(pid)
            if pid < 0 or pid in seen_in_frame:
                continue
            seen_in_frame.add(pid)
            occurrences[pid].append((frame, box.astype(np.int32).astype(np.float64)))
    all_frames = np.arange(num_images, dtype=np.int64)
    gallery_images, gt_images, gt_boxes, thresholds, count_gt = [], [], [], [], []
    for i, query in enumerate(queries):
        if len(query.person_ids) != 1 or int(query.person_ids[0]) < 0:
            raise DatasetError(None, f"query {i} ({query.image_name}): needs exactly one "
                                     f"labeled person id, got {query.person_ids.tolist()}")
        pid, frame, camera = int(query.person_ids[0]), query_frames[i], query.camera_id
        if ignore_cam_id:
            walk = np.delete(all_frames, frame)
            in_gallery = [(f, box) for f, box in occurrences.get(pid, []) if f != frame]
        else:
            walk = np.flatnonzero(cameras != camera)
            in_gallery = [(f, box) for f, box in occurrences.get(pid, [])
                          if f != frame and cameras[f] != camera]
        boxes = np.asarray([box for _, box in in_gallery], dtype=np.float64).reshape(-1, 4)
        gallery_images.append(walk)
        gt_images.append(np.asarray([f for f, _ in in_gallery], dtype=np.int64))
        gt_boxes.append(boxes)
        thresholds.append(size_adaptive_iou_threshold(boxes[:, 2] - boxes[:, 0],
                                                      boxes[:, 3] - boxes[:, 1]))
        count_gt.append(len(in_gallery))
    return SearchProtocol(gallery_images, gt_images, gt_boxes, thresholds,
                          np.asarray(count_gt, dtype=np.int64))


def iou_plus_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [N,4] in the +1 pixel convention (CGPS/DICL), float64."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inter_w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2])
                         - np.maximum(box[0], boxes[:, 0]) + 1.0)
    inter_h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3])
                         - np.maximum(box[1], boxes[:, 1]) + 1.0)
    inter = inter_w * inter_h
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area + areas - inter)


def query_feats_from_detections(query_boxes: np.ndarray, detections: GalleryDetections
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the feature of its frame's detection with max +1-IoU.

    Args:
        query_boxes: [Q, 4] x1y1x2y2 query boxes.
        detections: one "image" per query: all detections of that query's frame.
    Returns:
        (feats float32 [Q, D], found bool [Q]). A query whose frame has no detection at all
        has no feature to search with: its row is zero and ``found`` is False; the evaluation
        gives it AP 0 and no hit, and it still counts in the means (``search_metrics``'
        ``searchable``), as a missed query does in the CGPS/DICL protocol.
    """
    query_boxes = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    if detections.num_images != len(query_boxes):
        raise ValueError(f"{len(query_boxes)} queries but detections for "
                         f"{detections.num_images} query frames")
    found = detections.counts > 0
    feats = np.zeros((len(query_boxes), detections.feats.shape[1]), dtype=np.float32)
    for q in np.flatnonzero(found):
        start, stop = detections.image_offsets[q], detections.image_offsets[q + 1]
        feats[q] = detections.feats[start + int(np.argmax(iou_plus_one(query_boxes[q],
                                                                       detections.boxes[start:stop])))]
    return feats, found


def query_frame_detections(gallery: GalleryDetections, query_frames: np.ndarray
                           ) -> GalleryDetections:
    """The gallery detections of each query's frame, one "image" per query (unfiltered)."""
    starts = gallery.image_offsets[query_frames]
    counts = gallery.counts[query_frames]
    rows = concat_ranges(starts, counts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return GalleryDetections(offsets, gallery.boxes[rows], gallery.scores[rows],
                             gallery.feats[rows])
