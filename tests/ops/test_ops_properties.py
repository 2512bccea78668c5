"""Property-based tests (hypothesis) for the box ops, NMS and RoIAlign against naive loops.

Inputs are drawn on exact grids so float32 (ours) and float64 (the loops) agree without
tolerance games: integer box corners and dyadic thresholds for IoU / NMS (an IoU that is not
exactly the threshold differs from it by far more than float32 rounding), dyadic RoI corners,
power-of-two scales and bin counts for RoIAlign (every sample position is exact, so the
discontinuity of bilinear sampling at the border -1 / H is met identically). Example counts are
bounded and the runs derandomized, so the file takes seconds and never flakes.
"""

from __future__ import annotations

import contextlib
import math
from unittest import mock

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from personsearch.ops import batched_nms, nms
from personsearch.ops.boxes import (box_area, box_iou, clip_boxes, decode_boxes, encode_boxes,
                                    remove_small_boxes)
from personsearch.ops.roi_align import roi_align
from roi_reference import reference_pool
from test_nms import naive_nms, nms_impl

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def int_boxes(max_boxes=12, span=40, allow_empty=True):
    """[N, 4] float32 boxes with integer corners in [0, span], x2 >= x1, y2 >= y1 (zero-size
    boxes allowed when ``allow_empty``)."""
    low = 0 if allow_empty else 1
    corner = st.integers(0, span - 1)
    size = st.integers(low, span)
    rows = st.lists(st.tuples(corner, corner, size, size), max_size=max_boxes)
    return rows.map(lambda rows: torch.tensor(
        [[x1, y1, min(span, x1 + max(w, low)), min(span, y1 + max(h, low))] for x1, y1, w, h in rows],
        dtype=torch.float32).reshape(-1, 4))


def iou_loop(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# ------------------------------------------------------------------------------ box ops

@SETTINGS
@given(int_boxes(), int_boxes())
def test_box_iou_matches_the_loop_and_its_laws(boxes1, boxes2):
    iou = box_iou(boxes1, boxes2)
    assert iou.shape == (len(boxes1), len(boxes2))
    expected = torch.tensor([[iou_loop(a, b) for b in boxes2.tolist()] for a in boxes1.tolist()],
                            dtype=torch.float64).reshape(len(boxes1), len(boxes2))
    torch.testing.assert_close(iou.double(), expected, rtol=0, atol=1e-6)
    assert torch.all((iou >= 0) & (iou <= 1)) and not torch.isnan(iou).any()
    torch.testing.assert_close(box_iou(boxes2, boxes1), iou.T)  # symmetric
    positive = box_area(boxes1) > 0
    assert torch.all(box_iou(boxes1, boxes1).diagonal()[positive] == 1)


@SETTINGS
@given(int_boxes(), st.integers(1, 50), st.integers(1, 50))
def test_clip_boxes_stays_inside_and_is_idempotent(boxes, height, width):
    shifted = boxes - 10  # some corners negative, some beyond the image
    clipped = clip_boxes(shifted, (height, width))
    assert torch.all(clipped[:, 0::2] >= 0) and torch.all(clipped[:, 0::2] <= width)
    assert torch.all(clipped[:, 1::2] >= 0) and torch.all(clipped[:, 1::2] <= height)
    torch.testing.assert_close(clip_boxes(clipped, (height, width)), clipped)
    inside = torch.all((shifted[:, 0::2] >= 0) & (shifted[:, 0::2] <= width), dim=1) & \
        torch.all((shifted[:, 1::2] >= 0) & (shifted[:, 1::2] <= height), dim=1)
    torch.testing.assert_close(clipped[inside], shifted[inside])


@SETTINGS
@given(int_boxes(), st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_remove_small_boxes_matches_the_loop(boxes, min_size):
    keep = remove_small_boxes(boxes, min_size).tolist()
    assert keep == [i for i, (x1, y1, x2, y2) in enumerate(boxes.tolist())
                    if x2 - x1 >= min_size and y2 - y1 >= min_size]


@SETTINGS
@given(int_boxes(allow_empty=False), st.data())
def test_decode_inverts_encode(proposals, data):
    references = data.draw(int_boxes(max_boxes=len(proposals), allow_empty=False)
                           .filter(lambda boxes: len(boxes) == len(proposals)))
    weights = data.draw(st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
    deltas = encode_boxes(references.double(), proposals.double(), weights)
    decoded = decode_boxes(deltas, proposals.double(), weights, clamp=math.log(1000.0))
    torch.testing.assert_close(decoded, references.double(), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------ NMS

THRESHOLDS = st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.625, 0.875])


@SETTINGS
@given(int_boxes(max_boxes=40, span=24), st.data(), THRESHOLDS, st.booleans())
def test_nms_matches_the_naive_loop(boxes, data, threshold, tiny_blocks):
    # few distinct scores: ties are frequent and must go by index
    scores = torch.tensor(data.draw(st.lists(st.sampled_from([0.1, 0.5, 0.5, 0.9]),
                                             min_size=len(boxes), max_size=len(boxes))),
                          dtype=torch.float32)
    # tiny blocks push small inputs through the blocked / graph paths meant for large ones
    blocks = {"_PAIR_BLOCK": 3, "_GREEDY_BLOCK": 2, "_DENSE_EDGES": 4} if tiny_blocks else {}
    with mock.patch.dict("os.environ", {"PERSONSEARCH_PURE_OPS": "1"}), \
            (mock.patch.multiple(nms_impl, **blocks) if blocks else contextlib.nullcontext()):
        keep = nms(boxes, scores, threshold)
    assert keep.tolist() == naive_nms(boxes, scores, threshold)


@SETTINGS
@given(int_boxes(max_boxes=30, span=20), st.data(), THRESHOLDS)
def test_batched_nms_matches_the_naive_loop(boxes, data, threshold):
    count = len(boxes)
    scores = torch.tensor(data.draw(st.lists(st.sampled_from([0.2, 0.4, 0.8]), min_size=count,
                                             max_size=count)), dtype=torch.float32)
    idxs = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=count, max_size=count)),
                        dtype=torch.int64)
    with mock.patch.dict("os.environ", {"PERSONSEARCH_PURE_OPS": "1"}):
        keep = batched_nms(boxes, scores, idxs, threshold)
    assert keep.tolist() == naive_nms(boxes, scores, threshold, idxs)


# ------------------------------------------------------------------------------ RoIAlign

@st.composite
def roi_align_case(draw):
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    num = draw(st.integers(0, 4))
    rois = []
    for _ in range(num):  # quarter-pixel corners, some beyond the map on every side
        coords = [draw(st.integers(-8, 4 * int(max(height, width) / scale) + 8)) / 4.0 for _ in range(4)]
        x1, x2 = sorted(coords[0::2])
        y1, y2 = sorted(coords[1::2])
        rois.append([draw(st.integers(0, batch - 1)), x1, y1, x2, y2])
    seed = draw(st.integers(0, 2 ** 16))
    features = torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed),
                           dtype=torch.float64)
    return (features, torch.tensor(rois, dtype=torch.float64).reshape(-1, 5), scale,
            draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4])),
            draw(st.sampled_from([1, 2, 4])), draw(st.booleans()))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(roi_align_case())
def test_roi_align_matches_the_loop_reference(case):
    features, rois, scale, out_h, out_w, sampling_ratio, aligned = case
    with mock.patch.dict("os.environ", {"PERSONSEARCH_PURE_OPS": "1"}):
        ours = roi_align(features.float(), rois.float(), (out_h, out_w), scale, sampling_ratio, aligned)
    expected = reference_pool(features.float().double(), rois, out_h, out_w, scale, sampling_ratio, aligned)
    assert ours.shape == (len(rois), features.shape[1], out_h, out_w)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-5)
