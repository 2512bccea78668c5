"""Speed and accuracy of one inference path on a fixed set of images, compared with float32.

Shape glossary
--------------
images       uint8 [H, W, 3] check images (original pixels)
boxes        float32 [n_i, 4] per image, x1y1x2y2 in model input pixels: the float32 path's
             detections with score >= ``score_thresh`` plus ``FIXED_BOXES`` (so that every
             image has boxes to embed, persons or not)
embeddings   float32 [sum n_i, D] unit norm

The check: cosine between each path's and float32's embeddings of the same boxes (mean and
worst), and detection agreement = 2 * matched / (n_float32 + n_path) over detections with
score >= ``score_thresh`` (one-to-one matches at IoU >= 0.5; 1 when neither path detects).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.precision.paths import InferencePath

__all__ = ["FIXED_BOXES", "PathRun", "Tolerances", "boxes_to_embed", "compare_runs", "embed_given", "failed_tolerances",
           "run_path"]

# person-shaped boxes as fractions of the image (x1, y1, x2, y2)
FIXED_BOXES = ((0.10, 0.20, 0.22, 0.80), (0.40, 0.10, 0.52, 0.70), (0.70, 0.30, 0.80, 0.95), (0.30, 0.50, 0.36, 0.90))


@dataclass(frozen=True)
class Tolerances:
    cosine_mean: float = 0.98
    cosine_min: float = 0.90
    detection_agreement: float = 0.80


@dataclass
class PathRun:
    seconds_per_image: float
    detections: list[tuple[Tensor, Tensor]]  # per image (boxes [M, 4], scores [M]), model input pixels
    embeddings: Tensor | None  # [sum n_i, D] of the given boxes, None when none were given


def _batch(image: np.ndarray, min_size: int, max_size: int, channels_last: bool):
    from personsearch.data.transforms import batch_images, preprocess

    tensor, _ = preprocess(image, min_size, max_size)
    images, sizes = batch_images([tensor])
    return (images.contiguous(memory_format=torch.channels_last) if channels_last else images), sizes


def fixed_boxes(image_size: tuple[int, int]) -> Tensor:
    height, width = image_size
    return torch.tensor(FIXED_BOXES, dtype=torch.float32) * torch.tensor([width, height, width, height])


@torch.no_grad()
def embed_given(model: nn.Module, path: InferencePath, images: list[np.ndarray], min_size: int, max_size: int,
                boxes: list[Tensor]) -> Tensor:
    """Embeddings [sum n_i, D] of ``boxes`` (per image, model input pixels)."""
    out = []
    with path.autocast():
        for image, image_boxes in zip(images, boxes):
            images_tensor, sizes = _batch(image, min_size, max_size, path.channels_last)
            out.append(model.embed_boxes(images_tensor, sizes, [image_boxes])[0].float())
    return torch.cat(out)


@torch.no_grad()
def run_path(model: nn.Module, path: InferencePath, images: list[np.ndarray], min_size: int, max_size: int,
             boxes: list[Tensor] | None = None) -> PathRun:
    """Detect on every image (the first once more beforehand, untimed: session start-up and
    allocator warm-up) and embed ``boxes`` (per image); seconds per image of ``detect``."""
    batches = [_batch(image, min_size, max_size, path.channels_last) for image in images]
    detections, seconds = [], 0.0
    with path.autocast():
        model.detect(*batches[0])
        for images_tensor, sizes in batches:
            start = time.perf_counter()
            (found,) = model.detect(images_tensor, sizes)
            seconds += time.perf_counter() - start
            detections.append((found.boxes.float(), found.scores.float()))
    embeddings = None if boxes is None else embed_given(model, path, images, min_size, max_size, boxes)
    return PathRun(seconds / len(batches), detections, embeddings)


def boxes_to_embed(reference: PathRun, images: list[np.ndarray], min_size: int, max_size: int,
                   score_thresh: float) -> list[Tensor]:
    """Per image: the reference's confident detections and the fixed boxes (model pixels)."""
    out = []
    for image, (boxes, scores) in zip(images, reference.detections):
        _, sizes = _batch(image, min_size, max_size, channels_last=False)
        out.append(torch.cat([boxes[scores >= score_thresh], fixed_boxes(sizes[0])]))
    return out


def _agreement(reference: tuple[Tensor, Tensor], candidate: tuple[Tensor, Tensor], score_thresh: float) -> tuple[int, int]:
    """(matched pairs, detections of both) at IoU >= 0.5, greedy by reference score."""
    from personsearch.ops.boxes import box_iou

    ref_boxes = reference[0][reference[1] >= score_thresh]
    cand_boxes = candidate[0][candidate[1] >= score_thresh]
    total = ref_boxes.shape[0] + cand_boxes.shape[0]
    if ref_boxes.shape[0] == 0 or cand_boxes.shape[0] == 0:
        return 0, total
    iou = box_iou(ref_boxes, cand_boxes)
    matched, taken = 0, torch.zeros(cand_boxes.shape[0], dtype=torch.bool)
    for row in iou:
        row = row.masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= 0.5:
            taken[best] = True
            matched += 1
    return matched, total


def compare_runs(reference: PathRun, candidate: PathRun, score_thresh: float) -> dict:
    """Embedding cosine (mean, min) and detection agreement of ``candidate`` vs ``reference``."""
    cosine = (reference.embeddings * candidate.embeddings).sum(dim=1)
    matched = total = 0
    for ref, cand in zip(reference.detections, candidate.detections):
        pair_matched, pair_total = _agreement(ref, cand, score_thresh)
        matched, total = matched + pair_matched, total + pair_total
    return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "detection_agreement": 1.0 if total == 0 else 2.0 * matched / total,
            "boxes_compared": int(cosine.numel()), "detections_compared": total}


def failed_tolerances(comparison: dict, tolerances: Tolerances) -> list[str]:
    """What ``comparison`` misses of ``tolerances`` (empty when it passes)."""
    failures = []
    for key in ("cosine_mean", "cosine_min", "detection_agreement"):
        if not comparison[key] >= getattr(tolerances, key):  # NaN fails too
            failures.append(f"{key} {comparison[key]:.4f} < {getattr(tolerances, key)}")
    return failures
