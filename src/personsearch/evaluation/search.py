"""The one person-search evaluation core (docs/evaluation.md §0-2), for both benchmarks.

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
    """``min(0.5, w*h / ((w+10)*(h+10)))`` for integer GT sizes (docs/evaluation.md §0), float64."""
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
        counts = [int(np.asarray(s).size) for s in scores]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if feat_dim is None:
            # an image without detections still tells the dimension when its array is [0, D]
            dims = {np.asarray(f).shape[1] if np.asarray(f).ndim == 2 else np.asarray(f).size // count
                    for f, count in zip(feats, counts) if np.asarray(f).ndim == 2 or count}
            if len(dims) > 1:
                raise ValueError(f"feature dimensions differ between images: {sorted(dims)}")
            feat_dim = dims.pop() if dims else 0
        # explicit row counts: reshape(-1, D) is ambiguous for 0 rows when D is 0
        return cls(
            offsets,
            np.concatenate([np.asarray(b, np.float32).reshape(count, 4) for b, count in zip(boxes, counts)] +
                           [np.zeros((0, 4), np.float32)]),
            np.concatenate([np.asarray(s, np.float32).reshape(count) for s, count in zip(scores, counts)] +
                           [np.zeros(0, np.float32)]),
            np.concatenate([np.asarray(f, np.float32).reshape(count, feat_dim) for f, count in zip(feats, counts)] +
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
        if kept.all():
            return self
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
                   topk: tuple[int, ...] = DEFAULT_TOPK, max_chunk_items: int = 1 << 23,
                   searchable: np.ndarray | None = None) -> SearchResult:
    """Evaluate every query of ``protocol`` (see module docstring).

    Args:
        gallery: all detections of all G gallery images (unfiltered; filtered here).
        query_feats: float32 [Q, D].
        protocol: per-query gallery / GT structures over the same G images.
        det_thresh: detections with score >= det_thresh are kept.
        max_chunk_items: queries are processed in chunks of about this many list items.
        searchable: bool [Q] or None (all). A query marked False has no feature (its frame had
            no detection in the query-from-detection variant): AP 0, no hit, no true positive;
            it still counts in the means when it has GT images.
    """
    query_feats = np.ascontiguousarray(np.asarray(query_feats, dtype=np.float32))
    num_queries = protocol.num_queries
    if query_feats.ndim != 2 or len(query_feats) != num_queries:
        raise ValueError(f"query_feats must be [{num_queries}, D], got {query_feats.shape}")
    kept = gallery.keep(det_thresh)
    if len(kept.scores) and kept.feats.shape[1] != query_feats.shape[1]:
        raise ValueError(f"gallery features have dimension {kept.feats.shape[1]} but query "
                         f"features {query_feats.shape[1]}")
    for q, images in enumerate(protocol.gallery_images):
        if len(images) and (images.min() < 0 or images.max() >= gallery.num_images):
            raise ValueError(f"query {q}: gallery image index out of range 0..{gallery.num_images - 1}")
    list_sizes = np.array([int(kept.counts[images].sum()) for images in protocol.gallery_images],
                          dtype=np.int64)
    average_precisions = np.zeros(num_queries, dtype=np.float64)
    hits = np.zeros((num_queries, len(topk)), dtype=bool)
    count_tp = np.zeros(num_queries, dtype=np.int64)
    first = 0
    while first < num_queries:
        last = first + 1
        total = int(list_sizes[first])
        while last < num_queries and total + list_sizes[last] <= max_chunk_items:
            total += int(list_sizes[last])
            last += 1
        chunk = _ChunkEvaluation(kept, query_feats, protocol, first, last, list_sizes[first:last],
                                 tuple(topk))
        average_precisions[first:last] = chunk.average_precisions
        hits[first:last] = chunk.hits
        count_tp[first:last] = chunk.count_tp
        first = last
    if searchable is not None:
        searchable = np.asarray(searchable, dtype=bool).reshape(-1)
        if len(searchable) != num_queries:
            raise ValueError(f"searchable must have one entry per query ({num_queries}), "
                             f"got {len(searchable)}")
        average_precisions[~searchable] = 0.0
        hits[~searchable] = False
        count_tp[~searchable] = 0
    return SearchResult(average_precisions, hits, count_tp, protocol.count_gt.copy(), tuple(topk))


class _ChunkEvaluation:
    """Queries first..last-1 at once: their lists laid out flat (query-major, walk order)."""

    def __init__(self, kept: GalleryDetections, query_feats: np.ndarray,
                 protocol: SearchProtocol, first: int, last: int, list_sizes: np.ndarray,
                 topk: tuple[int, ...]) -> None:
        self.topk = topk
        num = last - first
        image_starts, image_counts = kept.image_offsets[:-1], kept.counts
        num_images = len(image_counts)
        pair_image = np.concatenate([protocol.gallery_images[q] for q in range(first, last)]
                                    + [np.zeros(0, np.int64)])
        pair_query = np.repeat(np.arange(num, dtype=np.int64),
                               [len(protocol.gallery_images[q]) for q in range(first, last)])
        pair_count = image_counts[pair_image]
        pair_flat_start = np.cumsum(pair_count) - pair_count
        self.query_ends = np.cumsum(list_sizes)
        self.query_starts = self.query_ends - list_sizes
        total = int(self.query_ends[-1]) if num else 0
        self.sims = self._similarities(kept, query_feats, first, num, list_sizes, pair_image,
                                       pair_query, pair_count, pair_flat_start, protocol)

        # where each GT image's block lies in the flat list
        pair_keys = pair_query * num_images + pair_image
        key_order = np.argsort(pair_keys, kind="stable")
        sorted_pair_keys = pair_keys[key_order]
        if np.any(sorted_pair_keys[1:] == sorted_pair_keys[:-1]):
            dup = int(pair_query[key_order][1:][sorted_pair_keys[1:] == sorted_pair_keys[:-1]][0])
            raise ValueError(f"query {first + dup}: a gallery image is listed twice")
        gt_query = np.repeat(np.arange(num, dtype=np.int64),
                             [len(protocol.gt_images[q]) for q in range(first, last)])
        gt_image = np.concatenate([protocol.gt_images[q] for q in range(first, last)]
                                  + [np.zeros(0, np.int64)])
        gt_boxes = np.concatenate([protocol.gt_boxes[q] for q in range(first, last)]
                                  + [np.zeros((0, 4))])
        gt_thresholds = np.concatenate([protocol.gt_iou_thresholds[q]
                                        for q in range(first, last)] + [np.zeros(0)])
        gt_keys = gt_query * num_images + gt_image
        found = np.searchsorted(sorted_pair_keys, gt_keys)
        found_clipped = np.minimum(found, max(len(sorted_pair_keys) - 1, 0))
        if len(gt_keys) and (len(sorted_pair_keys) == 0 or
                             np.any(sorted_pair_keys[found_clipped] != gt_keys)):
            bad = gt_query[(len(sorted_pair_keys) == 0) |
                           (sorted_pair_keys[found_clipped] != gt_keys)][0]
            raise ValueError(f"query {first + int(bad)}: a GT image is not in its gallery")
        gt_pair = key_order[found_clipped] if len(gt_keys) else np.zeros(0, np.int64)

        # per-image matching: the most similar detection with IoU >= threshold
        counts = image_counts[gt_image]
        detected = counts > 0
        self.entry_query = gt_query[detected]
        self.entry_start = pair_flat_start[gt_pair][detected]
        self.entry_count = counts[detected]
        det_index = concat_ranges(image_starts[gt_image[detected]], self.entry_count)
        flat_index = concat_ranges(self.entry_start, self.entry_count)
        self.overlaps = pairwise_iou(kept.boxes[det_index],
                                     np.repeat(gt_boxes[detected], self.entry_count, axis=0)
                                     ) >= np.repeat(gt_thresholds[detected], self.entry_count)
        self.entry_segment = np.cumsum(self.entry_count) - self.entry_count
        if len(self.entry_count):
            candidate = np.where(self.overlaps, self.sims[flat_index], np.float32(-np.inf))
            best = np.maximum.reduceat(candidate, self.entry_segment)
            matched = np.logical_or.reduceat(self.overlaps, self.entry_segment)
        else:
            best = np.zeros(0, np.float32)
            matched = np.zeros(0, bool)
        positive_query = self.entry_query[matched]
        positive_value = best[matched]
        self.count_tp = np.bincount(positive_query, minlength=num).astype(np.int64)

        # per query: one float32 sort of its list gives AP counts and the top-k cut
        self.average_precisions = np.zeros(num, dtype=np.float64)
        self.hits = np.zeros((num, len(topk)), dtype=bool)
        by_query = np.argsort(positive_query, kind="stable")
        positive_bounds = np.searchsorted(positive_query[by_query], np.arange(num + 1))
        count_gt = protocol.count_gt[first:last]
        for q in range(num):
            sorted_sims = np.sort(self.sims[self.query_starts[q]:self.query_ends[q]])
            positives = positive_value[by_query[positive_bounds[q]:positive_bounds[q + 1]]]
            tp = len(positives)
            if tp:
                self.average_precisions[q] = (average_precision_of_positives(sorted_sims, positives)
                                              * (tp * 1.0 / int(count_gt[q])))
            self.hits[q] = self._hits(q, sorted_sims, positives)

    def _similarities(self, kept, query_feats, first, num, list_sizes, pair_image, pair_query,
                      pair_count, pair_flat_start, protocol) -> np.ndarray:
        sims = np.empty(int(list_sizes.sum()), dtype=np.float32)
        num_items = len(kept.scores)
        dense = (4 * list_sizes >= num_items) & (list_sizes > 0)
        image_starts = kept.image_offsets[:-1]
        if dense.any():
            included = np.zeros(len(kept.counts), dtype=bool)
            image_of_item = np.repeat(np.arange(len(kept.counts)), kept.counts)
            dense_queries = np.flatnonzero(dense)
            for row_start in range(0, len(dense_queries), 64):
                rows = dense_queries[row_start:row_start + 64]
                block = query_feats[first + rows] @ kept.feats.T
                for row, q in zip(block, rows):
                    images = protocol.gallery_images[first + q]
                    target = sims[self.query_starts[q]:self.query_ends[q]]
                    if np.all(images[1:] > images[:-1]):  # walk order = detection order
                        included[images] = True
                        target[:] = row[included[image_of_item]]
                        included[images] = False
                    else:
                        target[:] = row[concat_ranges(image_starts[images],
                                                      kept.counts[images])]
        # sparse queries: one small matmul per gallery image over the queries that list it
        sparse_pair = np.flatnonzero(~dense[pair_query] & (pair_count > 0))
        if len(sparse_pair):
            by_image = sparse_pair[np.argsort(pair_image[sparse_pair], kind="stable")]
            images = pair_image[by_image]
            run_starts = np.flatnonzero(np.r_[True, images[1:] != images[:-1]])
            run_ends = np.r_[run_starts[1:], len(images)]
            for run_start, run_end in zip(run_starts, run_ends):
                pairs = by_image[run_start:run_end]
                image = images[run_start]
                count = int(kept.counts[image])
                start = int(image_starts[image])
                block = kept.feats[start:start + count] @ query_feats[first + pair_query[pairs]].T
                positions = pair_flat_start[pairs][:, None] + np.arange(count)
                sims[positions] = block.T
        return sims

    def _hits(self, q: int, sorted_sims: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """hit@k; the top-k set is fixed by value unless the k-th and (k+1)-th largest tie."""
        size = len(sorted_sims)
        hits = np.zeros(len(self.topk), dtype=bool)
        best = positives.max() if len(positives) else None
        for column, k in enumerate(self.topk):
            if size <= k:
                hits[column] = best is not None
                continue
            kth = sorted_sims[size - k]
            if kth == sorted_sims[size - k - 1]:
                return self._exact_hits(q)
            hits[column] = best is not None and best >= kth
        return hits

    def _exact_hits(self, q: int) -> np.ndarray:
        """hit@k with SeqNet's tie order: rebuild its (y_score, y_true) list — a GT image's
        block re-ordered by ``np.argsort(sim)[::-1]``, positive = first overlapping detection
        in that order — and rank it with ``np.argsort(y_score)[::-1]``."""
        start, end = int(self.query_starts[q]), int(self.query_ends[q])
        sims = self.sims[start:end]
        y_score = sims.copy()
        y_true = np.zeros(len(sims), dtype=np.int32)
        for entry in np.flatnonzero(self.entry_query == q):
            block_start = int(self.entry_start[entry]) - start
            length = int(self.entry_count[entry])
            segment = int(self.entry_segment[entry])
            block = sims[block_start:block_start + length]
            order = np.argsort(block)[::-1]
            y_score[block_start:block_start + length] = block[order]
            first = np.flatnonzero(self.overlaps[segment:segment + length][order])
            if len(first):
                y_true[block_start + first[0]] = 1
        ranked = y_true[np.argsort(y_score)[::-1]]
        return np.array([min(1, int(ranked[:k].sum())) == 1 for k in self.topk], dtype=bool)
