"""How one image's person label map is made from its boxes (``personsearch data masks``).

Every method returns a uint8 [H, W] label map in the contract of :mod:`personsearch.data.masks`
(0 = background, k + 1 = foreground of box k). Boxes are float x1, y1, x2, y2 in image pixels;
each box is first turned into the integer pixel window it covers (:func:`box_window`), clipped to
the image. A box that covers no pixel of the image is a DatasetError naming the image.

- ``box``: the whole window is foreground (no background filtering).
- ``grabcut``: OpenCV's GrabCut initialised with the box as its rectangle, on the box plus a
  margin of context (upscaled first when the box is shorter than GRABCUT_MIN_HEIGHT px). Where GrabCut cannot run (a box too small, a box with no background pixel
  around it) or returns no foreground, the whole box is used and the person is counted in
  ``MaskStats.box_fallbacks`` (printed at the end of the run).
- ``schp``: see :mod:`personsearch.models.schp` (per-box human parsing); foreground = any
  non-background class, each pixel scored by 1 - P(background).

Overlapping persons: ``box`` and ``grabcut`` give a pixel claimed by several boxes to the
smallest box: a box lying inside a larger one would otherwise lose all its pixels, and a
contested pixel is a larger share of a small person than of a large one. ``schp`` gives it to
the box whose parser scores it highest. Ties keep the lower box index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from personsearch.errors import DatasetError

GRABCUT_MIN_SIDE = 4          # boxes narrower or shorter than this (px) are kept whole
GRABCUT_MARGIN = 0.25         # context around the box, as a fraction of its width / height
GRABCUT_ITERATIONS = 5
GRABCUT_MIN_HEIGHT = 160      # shorter boxes: context upscaled to this box height first
MAX_BOXES = 255               # labels are uint8


@dataclass
class MaskStats:
    """What happened to the persons of one image (summed over a run)."""

    persons: int = 0
    box_fallbacks: int = 0     # grabcut: persons given their whole box (see module docstring)
    reasons: dict[str, int] = field(default_factory=dict)

    def fallback(self, reason: str) -> None:
        self.box_fallbacks += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def add(self, other: "MaskStats") -> None:
        self.persons += other.persons
        self.box_fallbacks += other.box_fallbacks
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


def box_window(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel window (x1, y1, x2, y2), end-exclusive, of every pixel the box touches,
    clipped to the image. Empty (x2 <= x1 or y2 <= y1) when the box lies outside."""
    x1 = max(0, math.floor(float(box[0])))
    y1 = max(0, math.floor(float(box[1])))
    x2 = min(width, math.ceil(float(box[2])))
    y2 = min(height, math.ceil(float(box[3])))
    return x1, y1, x2, y2


def box_windows(boxes: np.ndarray, width: int, height: int,
                image_path: str) -> list[tuple[int, int, int, int]]:
    """Windows of every box; DatasetError naming the image for a box with no pixel inside it,
    a non-finite box, or more boxes than a uint8 label map can hold."""
    if len(boxes) > MAX_BOXES:
        raise DatasetError(image_path, f"{len(boxes)} boxes: a mask label map holds at most "
                                       f"{MAX_BOXES}")
    windows = []
    for k, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        if not np.isfinite(box).all():
            raise DatasetError(image_path, f"box {k} {box.tolist()} is not finite")
        window = box_window(box, width, height)
        if window[2] <= window[0] or window[3] <= window[1]:
            raise DatasetError(image_path, f"box {k} {box.tolist()} has no pixel inside the "
                                           f"{width}x{height} image")
        windows.append(window)
    return windows


def paint_smallest_wins(shape: tuple[int, int], windows: list[tuple[int, int, int, int]],
                        foregrounds: list[np.ndarray]) -> np.ndarray:
    """Label map from per-box foregrounds (bool [window h, window w]); where boxes overlap the
    smallest window wins (ties: the lower box index)."""
    labels = np.zeros(shape, dtype=np.uint8)
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in windows]
    # paint large first so smaller boxes overwrite; stable on ties -> lower index painted last
    order = sorted(range(len(windows)), key=lambda k: (-areas[k], -k))
    for k in order:
        x1, y1, x2, y2 = windows[k]
        region = labels[y1:y2, x1:x2]
        region[foregrounds[k]] = k + 1
    return labels


def paint_highest_score(shape: tuple[int, int], windows: list[tuple[int, int, int, int]],
                        foregrounds: list[np.ndarray], scores: list[np.ndarray]) -> np.ndarray:
    """Label map where each pixel goes to the box whose foreground claims it with the highest
    score (float [window h, window w]); ties keep the lower box index."""
    labels = np.zeros(shape, dtype=np.uint8)
    best = np.full(shape, -np.inf, dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(windows):
        claim = foregrounds[k] & (scores[k] > best[y1:y2, x1:x2])
        best[y1:y2, x1:x2][claim] = scores[k][claim]
        labels[y1:y2, x1:x2][claim] = k + 1
    return labels


def box_label_map(image_rgb: np.ndarray, boxes: np.ndarray, image_path: str,
                  stats: MaskStats | None = None) -> np.ndarray:
    """Whole boxes as foreground (smallest box wins where they overlap)."""
    height, width = image_rgb.shape[:2]
    windows = box_windows(boxes, width, height, image_path)
    if stats is not None:
        stats.persons += len(windows)
    foregrounds = [np.ones((y2 - y1, x2 - x1), dtype=bool) for x1, y1, x2, y2 in windows]
    return paint_smallest_wins((height, width), windows, foregrounds)


def grabcut_foreground(image_bgr: np.ndarray, window: tuple[int, int, int, int],
                       stats: MaskStats, iterations: int = GRABCUT_ITERATIONS,
                       margin: float = GRABCUT_MARGIN) -> np.ndarray:
    """bool [window h, window w]: GrabCut's (probable) foreground inside the box window, the
    GrabCut model fitted on the window plus ``margin`` of context. Seeded (cv2.setRNGSeed(0))
    so a rerun gives the same mask."""
    import cv2

    height, width = image_bgr.shape[:2]
    x1, y1, x2, y2 = window
    box_w, box_h = x2 - x1, y2 - y1
    whole = np.ones((box_h, box_w), dtype=bool)
    if box_w < GRABCUT_MIN_SIDE or box_h < GRABCUT_MIN_SIDE:
        stats.fallback(f"box smaller than {GRABCUT_MIN_SIDE} px")
        return whole
    cx1 = max(0, x1 - int(round(margin * box_w)))
    cy1 = max(0, y1 - int(round(margin * box_h)))
    cx2 = min(width, x2 + int(round(margin * box_w)))
    cy2 = min(height, y2 + int(round(margin * box_h)))
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        stats.fallback("box covers the whole image (no background to model)")
        return whole
    context = np.ascontiguousarray(image_bgr[cy1:cy2, cx1:cx2])
    # GrabCut's colour models and smoothness term work poorly on a few hundred pixels: a short
    # person is segmented at GRABCUT_MIN_HEIGHT px (bilinear) and the result scaled back
    # (area-averaged, majority) -- on the synthetic data it lifts the mean IoU of 640x360 frames
    # from 0.48 to 0.6-0.7 (docs/masks.md)
    factor = max(1.0, GRABCUT_MIN_HEIGHT / box_h)
    rx1, ry1 = int(round((x1 - cx1) * factor)), int(round((y1 - cy1) * factor))
    rx2, ry2 = int(round((x2 - cx1) * factor)), int(round((y2 - cy1) * factor))
    if factor > 1.0:
        size = (int(round(context.shape[1] * factor)), int(round(context.shape[0] * factor)))
        context = cv2.resize(context, size, interpolation=cv2.INTER_LINEAR)
        rx2, ry2 = min(rx2, size[0]), min(ry2, size[1])
    grab = np.zeros(context.shape[:2], dtype=np.uint8)
    rect = (rx1, ry1, rx2 - rx1, ry2 - ry1)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(context, grab, rect, background_model, foreground_model, iterations,
                    cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # e.g. too few distinct colours to fit the colour models
        stats.fallback("GrabCut could not fit its colour models")
        return whole
    inside = grab[ry1:ry2, rx1:rx2]
    foreground = (inside == cv2.GC_FGD) | (inside == cv2.GC_PR_FGD)
    if factor > 1.0:
        share = cv2.resize(foreground.astype(np.float32), (box_w, box_h),
                           interpolation=cv2.INTER_AREA)
        foreground = share >= 0.5
    if not foreground.any():
        stats.fallback("GrabCut found no foreground")
        return whole
    return foreground


def grabcut_label_map(image_rgb: np.ndarray, boxes: np.ndarray, image_path: str,
                      stats: MaskStats | None = None) -> np.ndarray:
    """GrabCut foreground per box (smallest box wins where they overlap)."""
    height, width = image_rgb.shape[:2]
    windows = box_windows(boxes, width, height, image_path)
    stats = stats if stats is not None else MaskStats()
    stats.persons += len(windows)
    image_bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    foregrounds = [grabcut_foreground(image_bgr, window, stats) for window in windows]
    return paint_smallest_wins((height, width), windows, foregrounds)


class SchpParser:
    """Per-box SCHP human parsing (:mod:`personsearch.models.schp`): each box window is cut
    out, parsed at the parser's test-time input size with SCHP's affine transform, and its
    non-background pixels become the person's foreground, scored 1 - P(background); where
    boxes overlap the highest score wins."""

    def __init__(self, weights: str, device: str = "auto", dataset: str | None = None,
                 input_size: tuple[int, int] | None = None, batch_size: int = 8) -> None:
        import torch

        from personsearch.models.schp import load_schp

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        model, self.dataset = load_schp(weights, dataset)
        self.model = model.to(self.device)
        self.input_size = input_size or self.dataset.input_size
        self.batch_size = batch_size

    def label_map(self, image_rgb: np.ndarray, boxes: np.ndarray, image_path: str,
                  stats: MaskStats | None = None) -> np.ndarray:
        from personsearch.models.schp import parse_crops

        height, width = image_rgb.shape[:2]
        windows = box_windows(boxes, width, height, image_path)
        if stats is not None:
            stats.persons += len(windows)
        crops = [image_rgb[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
        parsed = parse_crops(self.model, crops, self.input_size, self.device, self.batch_size)
        return paint_highest_score((height, width), windows, [p[0] for p in parsed],
                                   [p[1] for p in parsed])
