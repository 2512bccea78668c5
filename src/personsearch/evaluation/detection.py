"""Detection recall and AP (SeqNet ``eval_detection``, docs/evaluation.md §3), vectorised.

Shape glossary
--------------
G  gallery images        N  GT boxes (all images, concatenated)     M  detections

Per image: GT = all boxes (``labeled_only``: boxes with a person id >= 0; an image without one
is skipped entirely, its detections included). Detections with ``score >= det_thresh`` are kept.
A (GT, detection) pair is a true positive iff IoU (float32) >= iou_thresh, the GT is the
argmax-IoU GT of the detection's column and the detection is the argmax-IoU detection of the
GT's row (ties -> lowest index): mutual-best matching. recall = TP / #GT; AP = step AP of all
kept detections pooled (label = TP for some GT) x recall.

Detections in an image without any GT box are false positives (SeqNet crashes there: argmax
of an empty column; real CUHK-SYSU / PRW test images always have a box). With no GT box at all
recall and AP are reported as 0.

Reported threshold: ``det_thresh = 0.01`` (SeqNet's engine: every model output is evaluated)
is the project default; the evaluators also report 0.5 (CGPS/DICL's choice).
"""

from __future__ import annotations

import numpy as np

from personsearch.evaluation.ap import average_precision
from personsearch.evaluation.search import pairwise_iou

DEFAULT_DET_THRESH = 0.01
ALSO_REPORTED_DET_THRESH = 0.5


def _pair_layout(rows: np.ndarray, cols: np.ndarray, row_offsets: np.ndarray,
                 col_offsets: np.ndarray, images: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All (row, col) pairs of each image, row-major: (global row, global col, local col,
    segment starts of each global row)."""
    sizes = rows[images] * cols[images]
    total = int(sizes.sum())
    block_starts = np.cumsum(sizes) - sizes
    image_of_pair = np.repeat(images, sizes)
    local = np.arange(total, dtype=np.int64) - np.repeat(block_starts, sizes)
    num_cols = cols[image_of_pair]
    local_row = local // num_cols
    local_col = local - local_row * num_cols
    global_row = row_offsets[image_of_pair] + local_row
    global_col = col_offsets[image_of_pair] + local_col
    segment_starts = np.flatnonzero(local_col == 0)
    return global_row, global_col, local_col, segment_starts


def _segment_argmax(values: np.ndarray, local_index: np.ndarray,
                    segment_starts: np.ndarray) -> np.ndarray:
    """Per segment, the local index of the first maximum (``np.argmax`` semantics)."""
    segment_max = np.maximum.reduceat(values, segment_starts)
    lengths = np.diff(np.append(segment_starts, len(values)))
    at_max = values == np.repeat(segment_max, lengths)
    big = np.iinfo(np.int64).max
    return np.minimum.reduceat(np.where(at_max, local_index, big), segment_starts)


def detection_metrics(gt_offsets: np.ndarray, gt_boxes: np.ndarray, gt_person_ids: np.ndarray,
                      det_offsets: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                      det_thresh: float = DEFAULT_DET_THRESH, iou_thresh: float = 0.5,
                      labeled_only: bool = False) -> dict[str, float]:
    """Detection recall and AP.

    Args:
        gt_offsets: int64 [G+1]; gt_boxes float [N,4] x1y1x2y2 (int-valued); gt_person_ids
            int64 [N] (-1 = unlabeled).
        det_offsets: int64 [G+1]; det_boxes float32 [M,4]; det_scores float32 [M].
    Returns:
        {"det_recall", "det_ap", "count_tp", "count_gt"}.
    """
    gt_offsets = np.asarray(gt_offsets, np.int64)
    det_offsets = np.asarray(det_offsets, np.int64)
    if len(gt_offsets) != len(det_offsets):
        raise ValueError(f"{len(gt_offsets) - 1} annotated images but detections for "
                         f"{len(det_offsets) - 1}")
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_person_ids = np.asarray(gt_person_ids, np.int64).reshape(-1)
    det_boxes = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    det_scores = np.asarray(det_scores, np.float32).reshape(-1)
    num_images = len(gt_offsets) - 1
    image_of_gt = np.repeat(np.arange(num_images), np.diff(gt_offsets))
    image_of_det = np.repeat(np.arange(num_images), np.diff(det_offsets))

    gt_keep = gt_person_ids >= 0 if labeled_only else np.ones(len(gt_boxes), bool)
    gt_counts = np.bincount(image_of_gt[gt_keep], minlength=num_images)
    image_used = gt_counts > 0 if labeled_only else np.ones(num_images, bool)
    det_keep = (det_scores >= det_thresh) & image_used[image_of_det]
    det_counts = np.bincount(image_of_det[det_keep], minlength=num_images)
    kept_gt = gt_boxes[gt_keep]
    kept_det_boxes = det_boxes[det_keep]
    kept_scores = det_scores[det_keep]
    gt_starts = np.concatenate([[0], np.cumsum(gt_counts)]).astype(np.int64)
    det_starts = np.concatenate([[0], np.cumsum(det_counts)]).astype(np.int64)

    both = np.flatnonzero((gt_counts > 0) & (det_counts > 0))
    is_positive = np.zeros(len(kept_scores), dtype=bool)
    count_tp = 0
    if len(both):
        # GT-major: rows = GT, segments = one GT's detections.
        gt_row, det_col, det_local, gt_segments = _pair_layout(
            gt_counts, det_counts, gt_starts, det_starts, both)
        iou = pairwise_iou(kept_gt[gt_row], kept_det_boxes[det_col]).astype(np.float32)
        best_det_of_gt = _segment_argmax(iou, det_local, gt_segments)
        # detection-major: rows = detections, segments = one detection's GT boxes.
        det_row, gt_col, gt_local, det_segments = _pair_layout(
            det_counts, gt_counts, det_starts, gt_starts, both)
        iou_by_det = pairwise_iou(kept_gt[gt_col], kept_det_boxes[det_row]).astype(np.float32)
        best_gt_of_det = _segment_argmax(iou_by_det, gt_local, det_segments)

        gt_rows_with_pairs = gt_row[gt_segments]
        det_rows_with_pairs = det_row[det_segments]
        best_det = np.full(len(kept_gt), -1, np.int64)
        best_det[gt_rows_with_pairs] = best_det_of_gt
        best_gt = np.full(len(kept_scores), -1, np.int64)
        best_gt[det_rows_with_pairs] = best_gt_of_det
        gt_local_of_pair = gt_row - gt_starts[np.repeat(both, gt_counts[both] * det_counts[both])]
        true_pair = ((iou >= iou_thresh) & (det_local == best_det[gt_row])
                     & (gt_local_of_pair == best_gt[det_col]))
        count_tp = int(true_pair.sum())
        is_positive[det_col[true_pair]] = True
    count_gt = int(gt_counts.sum())
    recall = count_tp / count_gt if count_gt else 0.0
    ap = average_precision(is_positive, kept_scores) * recall if len(kept_scores) else 0.0
    return {"det_recall": float(recall), "det_ap": float(ap), "count_tp": count_tp,
            "count_gt": count_gt}
