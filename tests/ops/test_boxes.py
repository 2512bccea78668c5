import math

import pytest
import torch

from personsearch.ops import box_area, box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes


def test_box_area_and_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 1.0, 2.0, 2.0], [10.0, 10.0, 11.0, 11.0], [0.0, 0.0, 2.0, 2.0]])
    assert box_area(a).tolist() == [4.0, 6.0]
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    # a0 vs b0: inter 1, union 4 + 1 - 1 = 4
    assert iou[0, 0].item() == pytest.approx(0.25)
    assert iou[0, 1].item() == 0.0
    assert iou[0, 2].item() == pytest.approx(1.0)
    # a1 vs b2: inter [1,1,2,2] = 1, union 6 + 4 - 1 = 9
    assert iou[1, 2].item() == pytest.approx(1.0 / 9.0)


def test_box_iou_degenerate_boxes_give_zero_not_nan():
    a = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    iou = box_iou(a, a)
    assert iou.item() == 0.0


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, -1.0, 50.0, 8.0], [3.0, 4.0, 5.0, 6.0]])
    clipped = clip_boxes(boxes, (7, 20))  # (h, w)
    assert clipped.tolist() == [[0.0, 0.0, 20.0, 7.0], [3.0, 4.0, 5.0, 6.0]]


def test_remove_small_boxes():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 10.0], [0, 0, 3.0, 3.0], [1, 1, 4.5, 9]])
    keep = remove_small_boxes(boxes, 3.0)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [0, 2, 3]


def test_encode_hand_computed_and_roundtrip():
    proposals = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # cx 5, cy 10, w 10, h 20
    reference = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # cx 12, cy 14, w 20, h 20
    deltas = encode_boxes(reference, proposals, (10.0, 10.0, 5.0, 5.0))
    expected = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]
    assert deltas[0].tolist() == pytest.approx(expected)
    decoded = decode_boxes(deltas, proposals, (10.0, 10.0, 5.0, 5.0))
    assert torch.allclose(decoded, reference, atol=1e-5)


def test_roundtrip_random_weights_one():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    proposals = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    xy2 = torch.rand(50, 2, generator=g) * 100
    reference = torch.cat([xy2, xy2 + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    deltas = encode_boxes(reference, proposals, (1.0, 1.0, 1.0, 1.0))
    assert torch.allclose(decode_boxes(deltas, proposals, (1.0, 1.0, 1.0, 1.0)), reference, atol=1e-3)


def test_decode_class_specific_and_clamp():
    proposals = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 100.0]])  # 2 classes
    out = decode_boxes(deltas, proposals, (1.0, 1.0, 1.0, 1.0))
    assert out.shape == (1, 8)
    assert out[0, :4].tolist() == pytest.approx([0.0, 0.0, 16.0, 16.0])
    # dw clamped at log(1000/16): width 16 * 1000/16 = 1000 around centre 8
    assert out[0, 4:].tolist() == pytest.approx([8 - 500.0, 8 - 500.0, 8 + 500.0, 8 + 500.0], rel=1e-5)
    assert torch.isfinite(out).all()


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        box_area(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="4\\*C"):
        decode_boxes(torch.zeros(2, 6), torch.zeros(2, 4), (1, 1, 1, 1))
