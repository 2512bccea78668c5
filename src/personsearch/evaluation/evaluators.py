"""Evaluators a model streams into, and the plain function ``evaluate_search``.

Shape glossary: M detections of one image, D feature dimension, G gallery images, Q queries.

    evaluator = PrwEvaluator(gallery_records, query_records)        # or CuhkSysuEvaluator
    evaluator.reset()
    for each gallery image:  evaluator.process(image_index, boxes [M,4], scores [M], feats [M,D])
    for each query:          evaluator.process_query(query_index, feat [D])
    metrics = evaluator.evaluate()   # {"mAP","top1","top5","top10","det_recall","det_ap",...}

``det_recall`` / ``det_ap`` are at det_thresh 0.01 (every model output; SeqNet's engine);
``det_recall@0.5`` / ``det_ap@0.5`` at 0.5 (CGPS/DICL); ``det_recall_labeled`` counts labeled
persons only. Search uses det_thresh 0.5 (docs/evaluation.md).

GT-box variant (``use_gt_boxes=True``): call ``process_gt(image_index, feats [n_gt, D])`` with
the model's features of the image's GT boxes; those boxes become the detections (score 1).
Query-from-detection (PRW, ``query_from_detection=True``): the query feature is taken from the
query frame's detections — ``process_query_detections`` if given, else the gallery detections
of the query frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from personsearch.data.records import SceneRecord
from personsearch.evaluation.cuhk_sysu import build_cuhk_sysu_protocol
from personsearch.evaluation.detection import (ALSO_REPORTED_DET_THRESH, DEFAULT_DET_THRESH,
                                               detection_metrics)
from personsearch.evaluation.prw import (build_prw_protocol, query_feats_from_detections,
                                         query_frame_detections, query_frame_indices)
from personsearch.evaluation.search import GalleryDetections, search_metrics

SEARCH_DET_THRESH = 0.5


def gt_box_detections(gallery_records: Sequence[SceneRecord],
                      gt_feats: Sequence[np.ndarray]) -> GalleryDetections:
    """The "use GT boxes" gallery: every GT box (labeled or not), score 1, given features."""
    if len(gt_feats) != len(gallery_records):
        raise ValueError(f"{len(gallery_records)} gallery images but GT features for "
                         f"{len(gt_feats)}")
    for record, feats in zip(gallery_records, gt_feats):
        if len(feats) != record.num_boxes:
            raise ValueError(f"{record.image_name}: {record.num_boxes} GT boxes but "
                             f"{len(feats)} features")
    return GalleryDetections.from_per_image([r.boxes for r in gallery_records],
                                            [np.ones(r.num_boxes, np.float32)
                                             for r in gallery_records], list(gt_feats))


def detection_report(gallery_records: Sequence[SceneRecord],
                     gallery: GalleryDetections) -> dict[str, float]:
    """Detection recall/AP at 0.01 (default) and 0.5, and labeled-only recall at 0.01."""
    gt_offsets = np.concatenate([[0], np.cumsum([r.num_boxes for r in gallery_records])])
    gt_boxes = np.concatenate([r.boxes for r in gallery_records] + [np.zeros((0, 4))])
    gt_ids = np.concatenate([r.person_ids for r in gallery_records] + [np.zeros(0, np.int64)])
    args = (gt_offsets, gt_boxes, gt_ids, gallery.image_offsets, gallery.boxes, gallery.scores)
    default = detection_metrics(*args, det_thresh=DEFAULT_DET_THRESH)
    also = detection_metrics(*args, det_thresh=ALSO_REPORTED_DET_THRESH)
    labeled = detection_metrics(*args, det_thresh=DEFAULT_DET_THRESH, labeled_only=True)
    return {"det_recall": default["det_recall"], "det_ap": default["det_ap"],
            f"det_recall@{ALSO_REPORTED_DET_THRESH}": also["det_recall"],
            f"det_ap@{ALSO_REPORTED_DET_THRESH}": also["det_ap"],
            "det_recall_labeled": labeled["det_recall"]}


def check_protocol_options(dataset: str, *, gallery_size: int = 100, cross_camera: bool = False,
                           query_from_detection: bool = False, det_thresh: float = SEARCH_DET_THRESH
                           ) -> None:
    """ConfigError naming the command-line flag for a protocol option that does not apply to
    ``dataset`` or is out of range — checked before a model runs over the whole test split."""
    import math

    from personsearch.data.cuhk_sysu import GALLERY_SIZES
    from personsearch.errors import ConfigError

    if not math.isfinite(det_thresh):
        raise ConfigError(f"--det-thresh must be a finite number, got {det_thresh}")
    if dataset == "cuhk-sysu":
        if gallery_size not in GALLERY_SIZES and gallery_size != -1:
            raise ConfigError(f"--gallery-size must be one of {', '.join(map(str, GALLERY_SIZES))} "
                              f"or -1 (the full pool), got {gallery_size}")
        for flag, given in (("--query-from-detection", query_from_detection),
                            ("--cross-camera", cross_camera)):
            if given:
                raise ConfigError(f"{flag} is a PRW protocol option; CUHK-SYSU queries are "
                                  f"evaluated with the protocol's own galleries")


def evaluate_search(dataset: str, gallery_records: Sequence[SceneRecord],
                    query_records: Sequence[SceneRecord], gallery: GalleryDetections,
                    query_feats: np.ndarray | None, *, cuhk_protocol: Sequence | None = None,
                    gallery_size: int = 100, ignore_cam_id: bool = True,
                    det_thresh: float = SEARCH_DET_THRESH, query_from_detection: bool = False,
                    query_detections: GalleryDetections | None = None) -> dict[str, float]:
    """Search + detection metrics as fractions.

    Args:
        dataset: "cuhk-sysu" | "prw".
        gallery: detections of every gallery image, in gallery_records order.
        query_feats: [Q, D] (may be None with ``query_from_detection``).
        cuhk_protocol: ``data.load_cuhk_protocol(root, gallery_size)`` entries (CUHK-SYSU).
        gallery_size: CUHK-SYSU gallery size; -1 = full pool (cuhk_protocol must be TestG50's).
        ignore_cam_id: PRW same-camera gallery (True, default) or cross-camera (False).
        query_from_detection: PRW only: query feature = the query frame's detection with max
            IoU (+1 convention) — from ``query_detections`` (one "image" per query) if given,
            else from the gallery detections of the query frame.
    """
    if gallery.num_images != len(gallery_records):
        raise ValueError(f"{len(gallery_records)} gallery records but detections for "
                         f"{gallery.num_images} images")
    out: dict[str, float] = {}
    searchable = None  # query-from-detection: False for a query frame without detections
    if dataset == "cuhk-sysu":
        if cuhk_protocol is None:
            raise ValueError("CUHK-SYSU needs the protocol (data.load_cuhk_protocol)")
        if query_from_detection:
            raise ValueError("query_from_detection is the PRW variant of CGPS/DICL")
        protocol = build_cuhk_sysu_protocol([r.image_name for r in gallery_records],
                                            cuhk_protocol, full_set=gallery_size == -1)
        out["gallery_size"] = gallery_size
    elif dataset == "prw":
        protocol = build_prw_protocol(gallery_records, query_records, ignore_cam_id)
        out["cross_camera"] = not ignore_cam_id
        if query_from_detection:
            if query_detections is None:
                query_detections = query_frame_detections(
                    gallery, query_frame_indices(gallery_records, query_records))
            query_boxes = np.stack([r.boxes[0] for r in query_records]) if query_records \
                else np.zeros((0, 4))
            query_feats, searchable = query_feats_from_detections(query_boxes, query_detections)
            out["queries_without_query_detection"] = int((~searchable).sum())
        out["query_from_detection"] = bool(query_from_detection)
    else:
        raise ValueError(f"dataset must be 'cuhk-sysu' or 'prw', got {dataset!r}")
    if query_feats is None:
        raise ValueError("query_feats are required")
    result = search_metrics(gallery, query_feats, protocol, det_thresh, searchable=searchable)
    out.update(result.summary())
    out.update(detection_report(gallery_records, gallery))
    return out


class SearchEvaluator:
    """reset() / process(...) / process_query(...) / evaluate() around ``evaluate_search``."""

    dataset = ""

    def __init__(self, gallery_records: Sequence[SceneRecord],
                 query_records: Sequence[SceneRecord], *, use_gt_boxes: bool = False,
                 det_thresh: float = SEARCH_DET_THRESH) -> None:
        self.gallery_records = list(gallery_records)
        self.query_records = list(query_records)
        self.use_gt_boxes = use_gt_boxes
        self.det_thresh = det_thresh
        self.reset()

    def reset(self) -> None:
        self._boxes: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}
        self._feats: dict[int, np.ndarray] = {}
        self._query_feats: dict[int, np.ndarray] = {}
        self._query_dets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _check_index(self, index: int, count: int, what: str) -> int:
        index = int(index)
        if not 0 <= index < count:
            raise IndexError(f"{what} index {index} out of range 0..{count - 1}")
        return index

    def process(self, image_index: int, boxes, scores, feats) -> None:
        """Detections of gallery image ``image_index``: boxes [M,4], scores [M], feats [M,D]."""
        if self.use_gt_boxes:
            raise RuntimeError("this evaluator uses GT boxes: call process_gt")
        g = self._check_index(image_index, len(self.gallery_records), "gallery image")
        self._boxes[g] = np.asarray(_numpy(boxes), np.float32).reshape(-1, 4)
        self._scores[g] = np.asarray(_numpy(scores), np.float32).reshape(-1)
        self._feats[g] = np.asarray(_numpy(feats), np.float32).reshape(len(self._scores[g]), -1)

    def process_gt(self, image_index: int, feats) -> None:
        """Features [n_gt, D] of gallery image ``image_index``'s GT boxes (GT-box variant)."""
        g = self._check_index(image_index, len(self.gallery_records), "gallery image")
        record = self.gallery_records[g]
        self._boxes[g] = record.boxes
        self._scores[g] = np.ones(record.num_boxes, np.float32)
        self._feats[g] = np.asarray(_numpy(feats), np.float32).reshape(record.num_boxes, -1)

    def process_query(self, query_index: int, feat) -> None:
        q = self._check_index(query_index, len(self.query_records), "query")
        self._query_feats[q] = np.asarray(_numpy(feat), np.float32).reshape(-1)

    def process_query_detections(self, query_index: int, boxes, scores, feats) -> None:
        q = self._check_index(query_index, len(self.query_records), "query")
        scores = np.asarray(_numpy(scores), np.float32).reshape(-1)
        self._query_dets[q] = (np.asarray(_numpy(boxes), np.float32).reshape(-1, 4), scores,
                               np.asarray(_numpy(feats), np.float32).reshape(len(scores), -1))

    def gallery_detections(self) -> GalleryDetections:
        missing = [g for g in range(len(self.gallery_records)) if g not in self._scores]
        if missing:
            raise ValueError(f"{len(missing)} gallery images were not processed (first: "
                             f"{self.gallery_records[missing[0]].image_name})")
        order = range(len(self.gallery_records))
        dims = {f.shape[1] for f in self._feats.values() if len(f)}
        return GalleryDetections.from_per_image([self._boxes[g] for g in order],
                                                [self._scores[g] for g in order],
                                                [self._feats[g] for g in order],
                                                dims.pop() if len(dims) == 1 else None)

    def query_features(self) -> np.ndarray | None:
        if not self._query_feats:
            return None
        missing = [q for q in range(len(self.query_records)) if q not in self._query_feats]
        if missing:
            raise ValueError(f"{len(missing)} queries have no feature (first: query "
                             f"{missing[0]})")
        return np.stack([self._query_feats[q] for q in range(len(self.query_records))])

    def query_detections(self) -> GalleryDetections | None:
        if not self._query_dets:
            return None
        missing = [q for q in range(len(self.query_records)) if q not in self._query_dets]
        if missing:
            raise ValueError(f"{len(missing)} queries have no detections (first: {missing[0]})")
        order = range(len(self.query_records))
        return GalleryDetections.from_per_image([self._query_dets[q][0] for q in order],
                                                [self._query_dets[q][1] for q in order],
                                                [self._query_dets[q][2] for q in order])

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError


class CuhkSysuEvaluator(SearchEvaluator):
    """CUHK-SYSU: ``protocol`` = data.load_cuhk_protocol(root, gallery_size)."""

    dataset = "cuhk-sysu"

    def __init__(self, gallery_records, query_records, protocol: Sequence,
                 gallery_size: int = 100, **kwargs) -> None:
        self.protocol = list(protocol)
        self.gallery_size = gallery_size
        super().__init__(gallery_records, query_records, **kwargs)

    def evaluate(self) -> dict[str, float]:
        return evaluate_search(self.dataset, self.gallery_records, self.query_records,
                               self.gallery_detections(), self.query_features(),
                               cuhk_protocol=self.protocol, gallery_size=self.gallery_size,
                               det_thresh=self.det_thresh)


class PrwEvaluator(SearchEvaluator):
    """PRW: same-camera gallery by default (``ignore_cam_id=True``)."""

    dataset = "prw"

    def __init__(self, gallery_records, query_records, ignore_cam_id: bool = True,
                 query_from_detection: bool = False, **kwargs) -> None:
        self.ignore_cam_id = ignore_cam_id
        self.query_from_detection = query_from_detection
        super().__init__(gallery_records, query_records, **kwargs)

    def evaluate(self) -> dict[str, float]:
        return evaluate_search(self.dataset, self.gallery_records, self.query_records,
                               self.gallery_detections(), self.query_features(),
                               ignore_cam_id=self.ignore_cam_id, det_thresh=self.det_thresh,
                               query_from_detection=self.query_from_detection,
                               query_detections=self.query_detections())


def _numpy(value):
    """Tensors (any device) or arrays -> numpy, without importing torch here."""
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return value
