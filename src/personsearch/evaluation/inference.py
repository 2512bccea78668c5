"""Run a person-search model over a benchmark's gallery and queries and evaluate it: the path
behind ``personsearch eval`` and the periodic evaluation during training.

Gallery: ``model.detect`` per image; detections mapped back to original pixels; features =
unit embedding × first-stage score (SeqNet's confidence-weighted similarity, docs/evaluation.md §5).
Queries: ``model.embed_boxes`` at the GT query box (unweighted); a query box of zero size or
entirely outside its image is refused before any work (``check_query_boxes``). GT-box variant (docs/evaluation.md §4):
``embed_boxes`` at every gallery GT box. The same arrays can be written as a results file
(``--results-out``), so ``personsearch evaluate-results`` on that file gives identical
numbers. How features are extracted is the checkpoint's method's choice
(:func:`method_feature_extractors`, the hook ``Method.test_feature_extractors``; DICL fuses
scene and crop features).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from personsearch.data.records import SceneRecord
from personsearch.data.transforms import batch_images, load_image, preprocess
from personsearch.errors import DatasetError

logger = logging.getLogger(__name__)

# (model, images [1,3,H,W], image_sizes) -> list of one (boxes [M,4], scores [M], feats [M,D])
GalleryExtractor = Callable[[nn.Module, torch.Tensor, list], list]
QueryExtractor = Callable[[nn.Module, torch.Tensor, list, list], list]


@dataclass
class ModelOutputs:
    """Per gallery image: boxes [M,4] original pixels, scores [M], feats [M,D] (score-weighted
    for detections; plain for the GT-box variant); query_feats [Q,D]."""

    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    feats: list[np.ndarray]
    query_feats: np.ndarray


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _prepare(record: SceneRecord, min_size: int, max_size: int, device: torch.device,
             channels_last: bool):
    tensor, scale = preprocess(load_image(record.image_path), min_size, max_size)
    images, image_sizes = batch_images([tensor])
    images = images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, image_sizes, scale


def check_query_boxes(queries: Sequence[SceneRecord]) -> None:
    """Refuse query boxes no feature can come from: zero or negative size, or entirely outside
    their image (DatasetError naming the image and the query). A box that only extends past
    the image border is pooled as given, as the reference protocols do (RoIAlign samples zeros
    outside), with one warning line counting such queries."""
    partly_outside = []
    for index, record in enumerate(queries):
        if record.num_boxes < 1:
            raise DatasetError(record.image_path, f"query {index} has no box")
        x1, y1, x2, y2 = (float(v) for v in record.boxes[0])
        if not (x2 > x1 and y2 > y1):
            raise DatasetError(record.image_path, f"query {index}: box {[x1, y1, x2, y2]} has "
                                                  f"zero or negative size, so no query feature "
                                                  f"can be taken from it (`personsearch data "
                                                  f"check` lists every such box)")
        if record.width > 0 and record.height > 0:
            if x2 <= 0 or y2 <= 0 or x1 >= record.width or y1 >= record.height:
                raise DatasetError(record.image_path, f"query {index}: box {[x1, y1, x2, y2]} "
                                                      f"lies entirely outside the "
                                                      f"{record.width}x{record.height} image")
            if x1 < 0 or y1 < 0 or x2 > record.width or y2 > record.height:
                partly_outside.append(index)
    if partly_outside:
        logger.warning("%d query boxes extend past their image (first: query %d, %s); they are "
                       "pooled as given, as the reference protocols do", len(partly_outside),
                       partly_outside[0], queries[partly_outside[0]].image_path)


def default_gallery_extractor(model: nn.Module, images: torch.Tensor, image_sizes: list) -> list:
    return [(d.boxes, d.scores, d.embeddings) for d in model.detect(images, image_sizes)]


def default_query_extractor(model: nn.Module, images: torch.Tensor, image_sizes: list,
                            boxes: list) -> list:
    return model.embed_boxes(images, image_sizes, boxes)


def method_feature_extractors(info: dict[str, Any], fusion: str = "auto") -> dict[str, Any]:
    """Keyword arguments for :func:`run_model` / :func:`evaluate_model` (``gallery_extractor`` /
    ``query_extractor``) for a checkpoint, from ``load_model``'s ``info``: the hook
    ``test_feature_extractors`` of the method that trained it, given the saved parameters
    (validated; old parameter names upgraded). ``fusion`` is ``personsearch eval --fusion``:
    "auto" (as trained), "on" or "off". A checkpoint of no registered method (e.g. an untrained
    model) takes the base behaviour: the model's own ``detect`` / ``embed_boxes``."""
    import personsearch.methods  # noqa: F401  (method modules may register themselves)
    from personsearch.methods.base import (Method, method_class, method_names,
                                           upgrade_saved_params, validate_params)

    if fusion not in ("auto", "on", "off"):
        raise ValueError(f"fusion must be auto, on or off, got {fusion!r}")
    name = info.get("method")
    if name not in method_names():
        return Method.test_feature_extractors(Method.Params(), fusion)
    method = method_class(name)
    saved = ((info.get("config") or {}).get("method") or {}).get("params") or {}
    params = validate_params(method, upgrade_saved_params(name, saved))
    return method.test_feature_extractors(params, fusion)


@torch.no_grad()
def run_model(
    model: nn.Module,
    gallery: Sequence[SceneRecord],
    queries: Sequence[SceneRecord],
    *,
    min_size: int = 900,
    max_size: int = 1500,
    device: torch.device | str = "cpu",
    use_gt_boxes: bool = False,
    bf16: bool = False,
    channels_last: bool = False,
    progress: bool = True,
    gallery_extractor: GalleryExtractor = default_gallery_extractor,
    query_extractor: QueryExtractor = default_query_extractor,
) -> ModelOutputs:
    """Detections and features for every gallery image and the query features. The
    extractors let a method change how features are made (DICL's crop fusion)."""
    from tqdm import tqdm

    check_query_boxes(queries)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    boxes_out: list[np.ndarray] = []
    scores_out: list[np.ndarray] = []
    feats_out: list[np.ndarray] = []
    try:
        for record in tqdm(gallery, desc="gallery", unit="img", disable=not progress,
                           dynamic_ncols=True, leave=False):
            images, image_sizes, scale = _prepare(record, min_size, max_size, device, channels_last)
            with _autocast(device, bf16):
                if use_gt_boxes:
                    gt = torch.from_numpy(np.asarray(record.boxes, np.float32) * scale).to(device)
                    (feats,) = query_extractor(model, images, image_sizes, [gt])
                    boxes = np.asarray(record.boxes, np.float32)
                    scores = np.ones(len(boxes), np.float32)
                    feats = feats.float().cpu().numpy()
                else:
                    ((det_boxes, det_scores, det_feats),) = gallery_extractor(model, images, image_sizes)
                    boxes = (det_boxes.float().cpu() / scale).numpy()
                    scores = det_scores.float().cpu().numpy()
                    feats = (det_feats.float().cpu() * det_scores.float().cpu()[:, None]).numpy()
            boxes_out.append(boxes.astype(np.float32))
            scores_out.append(scores.astype(np.float32))
            feats_out.append(feats.astype(np.float32))
        query_feats = []
        for record in tqdm(queries, desc="queries", unit="img", disable=not progress,
                           dynamic_ncols=True, leave=False):
            images, image_sizes, scale = _prepare(record, min_size, max_size, device, channels_last)
            box = torch.from_numpy(np.asarray(record.boxes[:1], np.float32) * scale).to(device)
            with _autocast(device, bf16):
                (feat,) = query_extractor(model, images, image_sizes, [box])
            query_feats.append(feat.float().cpu().numpy().reshape(-1))
    finally:
        model.train(was_training)
    dim = feats_out[0].shape[1] if feats_out and feats_out[0].ndim == 2 else int(getattr(model, "embedding_dim", 0))
    feats_out = [f.reshape(-1, dim) for f in feats_out]
    query_array = np.stack(query_feats).astype(np.float32) if query_feats else np.zeros((0, dim), np.float32)
    return ModelOutputs(boxes_out, scores_out, feats_out, query_array)


def evaluate_outputs(
    outputs: ModelOutputs,
    fmt: str,
    root: str | Path,
    gallery: Sequence[SceneRecord],
    queries: Sequence[SceneRecord],
    *,
    gallery_size: int = 100,
    det_thresh: float = 0.5,
    cross_camera: bool = False,
    query_from_detection: bool = False,
) -> dict[str, float]:
    from personsearch.evaluation.evaluators import evaluate_search
    from personsearch.evaluation.search import GalleryDetections

    detections = GalleryDetections.from_per_image(outputs.boxes, outputs.scores, outputs.feats)
    protocol = None
    if fmt == "cuhk-sysu":
        from personsearch.data import load_cuhk_protocol

        protocol = load_cuhk_protocol(root, gallery_size)
    return evaluate_search(fmt, gallery, queries, detections, outputs.query_feats,
                           cuhk_protocol=protocol, gallery_size=gallery_size,
                           ignore_cam_id=not cross_camera, det_thresh=det_thresh,
                           query_from_detection=query_from_detection)


def evaluate_model(
    model: nn.Module,
    *,
    fmt: str,
    root: str | Path,
    gallery_size: int = 100,
    det_thresh: float = 0.5,
    min_size: int = 900,
    max_size: int = 1500,
    device: torch.device | str = "cpu",
    use_gt_boxes: bool = False,
    cross_camera: bool = False,
    query_from_detection: bool = False,
    bf16: bool = False,
    channels_last: bool = False,
    progress: bool = True,
    results_out: str | Path | None = None,
    gallery_extractor: GalleryExtractor = default_gallery_extractor,
    query_extractor: QueryExtractor = default_query_extractor,
) -> dict[str, float]:
    """Run ``model`` on the benchmark at ``root`` and return the metrics (fractions). With
    ``results_out`` also write the results file that ``evaluate-results`` reads."""
    from personsearch.data import load_split

    gallery = load_split(fmt, root, "gallery")
    queries = load_split(fmt, root, "query")
    outputs = run_model(model, gallery, queries, min_size=min_size, max_size=max_size,
                        device=device, use_gt_boxes=use_gt_boxes, bf16=bf16,
                        channels_last=channels_last, progress=progress,
                        gallery_extractor=gallery_extractor, query_extractor=query_extractor)
    if results_out is not None:
        from personsearch.evaluation.results_file import write_results_file

        write_results_file(results_out, [r.image_name for r in gallery],
                           [np.concatenate([b, s[:, None]], axis=1)
                            for b, s in zip(outputs.boxes, outputs.scores)],
                           outputs.feats, outputs.query_feats)
    return evaluate_outputs(outputs, fmt, root, gallery, queries, gallery_size=gallery_size,
                            det_thresh=det_thresh, cross_camera=cross_camera,
                            query_from_detection=query_from_detection)
