"""The one person-search evaluation core (shared/spec/eval.md §0-2), for both benchmarks.

Protocol builders (``cuhk_sysu.py``, ``prw.py``) turn annotations into a
:class:`SearchProtocol`; this module never reads files.

Shape glossary
--------------
G  gallery images            M  detections (all gallery images, concatenated)
Q  queries                   D  feature dimension
K  GT entries of one query (gallery images that show the query person)

Semantics (SeqNet ``eval_func.py``), per query:

- the list = every kept detection (``score >= det_thresh``) of every image of the query's
  gallery, walked in protocol order; similarity = float32 dot product of features;
- ``count_gt`` (given by the builder) counts the GT images, detected or not;
- in a GT image the positive is the *most similar* detection with IoU >= the size-adaptive
  threshold (at most one per image); every other item is a negative;
- AP = scikit-learn step AP of the list x count_tp / count_gt (0 when count_tp = 0);
- hit@k from ``np.argsort(y_score)[::-1]`` of the list built exactly as SeqNet builds it.

How it is fast without changing those semantics: similarities of a query come from one float32
matmul over a chunk of queries (or a gathered mat-vec when the query's list is small); AP only
needs, for each positive score t, the number of list items scoring >= t, read from the sorted
list; hit@k only depends on the tie order of ``np.argsort`` when the k-th and (k+1)-th largest
scores are equal — only then is SeqNet's list rebuilt in SeqNet's order and argsorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from personsearch.evaluation.ap import average_precision_of_positives

DEFAULT_TOPK = (1, 5, 10)


def size_adaptive_iou_threshold(widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """``min(0.5, w*h / ((w+10)*(h+10)))`` for integer GT sizes (eval.md §0), float64."""
    widths = np.asarray(widths, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.int64)
    ratio = (widths * heights).astype(np.float64) / ((widths + 10) * (heights + 10)).astype(
        np.float64)
    return np.minimum(0.5, ratio)


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes_a [N,4] and boxes_b [N,4] (x1y1x2y2, no +1), float64 [N]."""
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    inter_w = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    inter_h = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = inter_w * inter_h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a + area_b - inter)


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (s, c), int64."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    block_starts = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, dtype=np.int64) - block_starts, counts) + np.arange(
        total, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class GalleryDetections:
    """Detections of every gallery image, concatenated in image order.

    image_offsets: int64 [G+1], detections of image g are rows image_offsets[g]:image_offsets[g+1].
    boxes: float32 [M,4] x1y1x2y2.  scores: float32 [M].  feats: float32 [M,D].
    """

    image_offsets: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    feats: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.image_offsets, dtype=np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        feats = np.asarray(self.feats, dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"feats must be [M, D], got shape {feats.shape}")
        if offsets.size < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise ValueError("image_offsets must start at 0 and be non-decreasing")
        if not (offsets[-1] == len(boxes) == len(scores) == len(feats)):
            raise ValueError(f"image_offsets end at {offsets[-1]} but there are {len(boxes)} "
                             f"boxes, {len(scores)} scores, {len(feats)} feature rows")
        object.__setattr__(self, "image_offsets", offsets)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "feats", np.ascontiguousarray(feats))

    @classmethod
    def from_per_image(cls, boxes: list[np.ndarray], scores: list[np.ndarray],
                       feats: list[np.ndarray], feat_dim: int | None = None
                       ) -> "GalleryDetections":
        """From per-image arrays (boxes [m,4], scores [m], feats [m,D])."""
        if not (len(boxes) == len(scores) == len(feats)):
            raise ValueError("boxes, scores and feats must have one entry per image")
        counts = [len(np.asarray(s).reshape(-1)) for s in scores]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if feat_dim is None:
            dims = {np.asarray(f).reshape(len(np.asarray(s).reshape(-1)), -1).shape[1]
                    for f, s in zip(feats, scores) if len(np.asarray(s).reshape(-1))}
            if len(dims) > 1:
                raise ValueError(f"feature dimensions differ between images: {sorted(dims)}")
            feat_dim = dims.pop() if dims else 0
        return cls(
            offsets,
            np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes] +
                           [np.zeros((0, 4), np.float32)]),
            np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in scores] +
                           [np.zeros(0, np.float32)]),
            np.concatenate([np.asarray(f, np.float32).reshape(-1, feat_dim) for f in feats] +
                           [np.zeros((0, feat_dim), np.float32)]),
        )

    @property
    def num_images(self) -> int:
        return int(self.image_offsets.size - 1)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.image_offsets)

    def keep(self, det_thresh: float) -> "GalleryDetections":
        """Detections with ``score >= det_thresh`` (inclusive), original order kept."""
        kept = self.scores >= det_thresh
        cumulative = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        return GalleryDetections(cumulative[self.image_offsets], self.boxes[kept],
                                 self.scores[kept], self.feats[kept])


@dataclass(frozen=True, eq=False)
class SearchProtocol:
    """Per-query structures the core evaluates (built by cuhk_sysu.py / prw.py).

    gallery_images: per query, int64 [n_q] gallery image indices in walk order, unique.
    gt_images: per query, int64 [K] the gallery images showing the query person (each also in
        gallery_images), unique.
    gt_boxes: per query, float64 [K,4] x1y1x2y2 of the person's (int32-truncated) box there.
    gt_iou_thresholds: per query, float64 [K] IoU threshold for matching in each GT image.
    count_gt: int64 [Q] GT images counted for the recall correction (>= K; CUHK duplicates).
    """

    gallery_images: list[np.ndarray]
    gt_images: list[np.ndarray]
    gt_boxes: list[np.ndarray]
    gt_iou_thresholds: list[np.ndarray]
    count_gt: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        num = len(self.gallery_images)
        if not (len(self.gt_images) == len(self.gt_boxes) == len(self.gt_iou_thresholds) == num):
            raise ValueError("every per-query list of a SearchProtocol needs one entry per query")
        gt_images = [np.asarray(g, np.int64).reshape(-1) for g in self.gt_images]
        count_gt = (np.array([len(g) for g in gt_images], np.int64) if self.count_gt is None
                    else np.asarray(self.count_gt, np.int64).reshape(-1))
        if len(count_gt) != num or np.any(count_gt < [len(g) for g in gt_images]):
            raise ValueError("count_gt must have one entry per query, each >= its GT entries")
        object.__setattr__(self, "gallery_images",
                           [np.asarray(g, np.int64).reshape(-1) for g in self.gallery_images])
        object.__setattr__(self, "gt_images", gt_images)
        object.__setattr__(self, "gt_boxes",
                           [np.asarray(b, np.float64).reshape(-1, 4) for b in self.gt_boxes])
        object.__setattr__(self, "gt_iou_thresholds",
                           [np.asarray(t, np.float64).reshape(-1)
                            for t in self.gt_iou_thresholds])
        object.__setattr__(self, "count_gt", count_gt)

    @property
    def num_queries(self) -> int:
        return len(self.gallery_images)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Per-query outcome. average_precisions float64 [Q] (AP x recall correction), hits bool
    [Q, len(topk)], count_tp / count_gt int64 [Q]. Queries with count_gt = 0 (possible only
    in the cross-camera PRW gallery, where SeqNet divides by zero) are left out of the means
    and counted in ``queries_without_gt``."""

    average_precisions: np.ndarray
    hits: np.ndarray
    count_tp: np.ndarray
    count_gt: np.ndarray
    topk: tuple[int, ...] = DEFAULT_TOPK

    @property
    def evaluated(self) -> np.ndarray:
        return self.count_gt > 0

    def summary(self) -> dict[str, float]:
        valid = self.evaluated
        out: dict[str, float] = {
            "mAP": float(np.mean(self.average_precisions[valid])) if valid.any() else 0.0}
        for column, k in enumerate(self.topk):
            out[f"top{k}"] = float(np.mean(self.hits[valid, column])) if valid.any() else 0.0
        out["num_queries"] = int(valid.sum())
        out["queries_without_gt"] = int((~valid).sum())
        return out


def search_metrics(gallery: GalleryDetections, query_feats: np.ndarray,
                   protocol: SearchProtocol, det_thresh: float = 0.5,
                   topk: tuple[int, ...] = DEFAULT_TOPK, chunk_size: int = 128
                   ) -> SearchResult:
    """Evaluate every query of ``protocol`` (see module docstring).

    Args:
        gallery: all detections of all G gallery images (unfiltered; filtered here).
        query_feats: float32 [Q, D].
        protocol: per-query gallery / GT structures over the same G images.
        det_thresh: detections with score >= det_thresh are kept.
    """
    query_feats = np.ascontiguousarray(np.asarray(query_feats, dtype=np.float32))
    num_queries = protocol.num_queries
    if query_feats.ndim != 2 or len(query_feats) != num_queries:
        raise ValueError(f"query_feats must be [{num_queries}, D], got {query_feats.shape}")
    kept = gallery.keep(det_thresh)
    if len(kept.scores) and kept.feats.shape[1] != query_feats.shape[1]:
        raise ValueError(f"gallery features have dimension {kept.feats.shape[1]} but query "
                         f"features {query_feats.shape[1]}")
    image_starts = kept.image_offsets[:-1]
    image_counts = kept.counts
    num_items_total = len(kept.scores)
    walk_position = np.full(gallery.num_images, -1, dtype=np.int64)

    average_precisions = np.zeros(num_queries, dtype=np.float64)
    hits = np.zeros((num_queries, len(topk)), dtype=bool)
    count_tp = np.zeros(num_queries, dtype=np.int64)
    for chunk_start in range(0, num_queries, chunk_size):
        chunk = range(chunk_start, min(chunk_start + chunk_size, num_queries))
        items_per_query = [concat_ranges(image_starts[protocol.gallery_images[q]],
                                         image_counts[protocol.gallery_images[q]])
                           for q in chunk]
        dense = [4 * len(items) >= num_items_total and len(items) > 0
                 for items in items_per_query]
        dense_rows = None
        if any(dense):
            dense_queries = [q for q, d in zip(chunk, dense) if d]
            dense_rows = dict(zip(dense_queries, range(len(dense_queries))))
            dense_sims = query_feats[dense_queries] @ kept.feats.T
        for q, items, is_dense in zip(chunk, items_per_query, dense):
            if is_dense:
                sims = dense_sims[dense_rows[q]][items]
            else:
                sims = kept.feats[items] @ query_feats[q]
            ap, query_hits, tp = _evaluate_query(
                sims, protocol, q, kept, image_starts, image_counts, walk_position, topk)
            average_precisions[q], hits[q], count_tp[q] = ap, query_hits, tp
    return SearchResult(average_precisions, hits, count_tp, protocol.count_gt.copy(),
                        tuple(topk))


def _evaluate_query(sims: np.ndarray, protocol: SearchProtocol, q: int,
                    kept: GalleryDetections, image_starts: np.ndarray,
                    image_counts: np.ndarray, walk_position: np.ndarray,
                    topk: tuple[int, ...]) -> tuple[float, np.ndarray, int]:
    """(AP x recall correction, hits [len(topk)], count_tp) of query q given its list's
    similarities ``sims`` [L] float32 in walk order."""
    gallery_images = protocol.gallery_images[q]
    walk_position[gallery_images] = np.arange(len(gallery_images))
    if np.any(walk_position[gallery_images] != np.arange(len(gallery_images))):
        walk_position[gallery_images] = -1
        raise ValueError(f"query {q}: a gallery image is listed twice")
    try:
        gallery_counts = image_counts[gallery_images]
        block_starts = np.cumsum(gallery_counts) - gallery_counts
        gt_images = protocol.gt_images[q]
        gt_walk = walk_position[gt_images]
        if np.any(gt_walk < 0):
            raise ValueError(f"query {q}: a GT image is not in the query's gallery")
    finally:
        walk_position[gallery_images] = -1
    match = _match_gt_images(sims, kept.boxes, gt_images, protocol.gt_boxes[q],
                             protocol.gt_iou_thresholds[q], image_starts, image_counts,
                             block_starts[gt_walk])
    positive_scores = match.positive_scores
    count_tp = len(positive_scores)
    count_gt = int(protocol.count_gt[q])

    sorted_sims = np.sort(sims)
    average_precision = 0.0
    if count_tp > 0:
        average_precision = (average_precision_of_positives(sorted_sims, positive_scores)
                             * (count_tp * 1.0 / count_gt))

    num_items = len(sims)
    query_hits = np.zeros(len(topk), dtype=bool)
    needs_exact = False
    for column, k in enumerate(topk):
        if num_items <= k:
            query_hits[column] = count_tp > 0
            continue
        kth = sorted_sims[num_items - k]          # k-th largest
        if kth == sorted_sims[num_items - k - 1]:  # tie across the cut: argsort decides
            needs_exact = True
            break
        query_hits[column] = bool(np.any(positive_scores >= kth))
    if needs_exact:
        query_hits = _exact_hits(sims, match, topk)
    return average_precision, query_hits, count_tp


@dataclass(frozen=True, eq=False)
class _GtMatch:
    """Per-image matching of one query. For every GT image with kept detections: its block
    (start, length) in the list, the IoU >= threshold flags of its detections (det order)."""

    block_starts: np.ndarray
    block_lengths: np.ndarray
    overlaps: list[np.ndarray]
    positive_scores: np.ndarray


def _match_gt_images(sims: np.ndarray, det_boxes: np.ndarray, gt_images: np.ndarray,
                     gt_boxes: np.ndarray, thresholds: np.ndarray, image_starts: np.ndarray,
                     image_counts: np.ndarray, gt_block_starts: np.ndarray) -> _GtMatch:
    counts = image_counts[gt_images]
    detected = counts > 0
    counts = counts[detected]
    block_starts = gt_block_starts[detected]
    det_index = concat_ranges(image_starts[gt_images[detected]], counts)
    list_index = concat_ranges(block_starts, counts)
    repeated_gt = np.repeat(gt_boxes[detected], counts, axis=0)
    overlaps = pairwise_iou(det_boxes[det_index], repeated_gt) >= np.repeat(
        thresholds[detected], counts)
    if len(counts) == 0:
        return _GtMatch(block_starts, counts, [], np.zeros(0, np.float32))
    segment_starts = np.cumsum(counts) - counts
    candidate = np.where(overlaps, sims[list_index], np.float32(-np.inf))
    best = np.maximum.reduceat(candidate, segment_starts)
    matched = np.logical_or.reduceat(overlaps, segment_starts)
    return _GtMatch(block_starts, counts, np.split(overlaps, segment_starts[1:]),
                    best[matched].astype(np.float32))


def _exact_hits(sims: np.ndarray, match: _GtMatch, topk: tuple[int, ...]) -> np.ndarray:
    """hit@k with SeqNet's tie order: rebuild its (y_score, y_true) list — a GT image's block
    re-ordered by ``np.argsort(sim)[::-1]``, positive = first overlapping detection in that
    order — and rank it with ``np.argsort(y_score)[::-1]``."""
    y_score = sims.copy()
    y_true = np.zeros(len(sims), dtype=np.int32)
    for start, length, overlaps in zip(match.block_starts, match.block_lengths, match.overlaps):
        block = sims[start:start + length]
        order = np.argsort(block)[::-1]
        y_score[start:start + length] = block[order]
        first = np.flatnonzero(overlaps[order])
        if len(first):
            y_true[start + first[0]] = 1
    ranked = y_true[np.argsort(y_score)[::-1]]
    return np.array([min(1, int(ranked[:k].sum())) == 1 for k in topk], dtype=bool)
