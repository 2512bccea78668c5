"""Anchors (hand-computed on a 2x2 grid), matcher, sampler, and the RPN."""

import torch

from personsearch.models.anchors import AnchorGenerator, make_cell_anchors
from personsearch.models.sampling import BELOW_LOW, BETWEEN, BalancedSampler, Matcher, labels_from_matches


def test_cell_anchors_hand_computed():
    cell = make_cell_anchors((32,), (0.5, 1.0, 2.0))
    # ratio h/w 0.5: h = 32*sqrt(.5) = 22.63, w = 45.25 -> half sizes 11.31, 22.63 -> rounded
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    assert torch.equal(cell, expected)


def test_seqnet_anchor_count():
    gen = AnchorGenerator((32, 64, 128, 256, 512), (0.5, 1.0, 2.0), stride=16)
    assert gen.num_anchors_per_location == 15
    anchors = gen(torch.zeros(1, 8, 3, 5))
    assert anchors.shape == (3 * 5 * 15, 4)
    # areas roughly size**2, tall boxes for ratio 2
    widths = anchors[:15, 2] - anchors[:15, 0]
    heights = anchors[:15, 3] - anchors[:15, 1]
    assert torch.all(heights[10:] > widths[10:]) and torch.all(heights[:5] < widths[:5])


def test_grid_anchors_2x2_hand_computed():
    gen = AnchorGenerator((16,), (1.0,), stride=16)
    anchors = gen.grid_anchors((2, 2))
    expected = torch.tensor(
        [[-8.0, -8.0, 8.0, 8.0], [8.0, -8.0, 24.0, 8.0], [-8.0, 8.0, 8.0, 24.0], [8.0, 8.0, 24.0, 24.0]]
    )
    assert torch.equal(anchors, expected)


def test_grid_anchors_location_major_order():
    gen = AnchorGenerator((16, 32), (1.0,), stride=10)
    anchors = gen.grid_anchors((1, 2))
    assert torch.equal(anchors[:2], gen.cell_anchors)
    assert torch.equal(anchors[2:], gen.cell_anchors + torch.tensor([10.0, 0.0, 10.0, 0.0]))


def test_matcher_thresholds_and_low_quality():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.2, 0.6, 0.25, 0.0]])
    plain = Matcher(0.7, 0.3)(iou)
    assert plain.tolist() == [0, BETWEEN, BELOW_LOW, BELOW_LOW]
    low_quality = Matcher(0.7, 0.3, allow_low_quality=True)(iou)
    assert low_quality.tolist() == [0, 1, BELOW_LOW, BELOW_LOW]  # GT 1's best candidate kept
    assert labels_from_matches(plain).tolist() == [1, -1, 0, 0]


def test_matcher_without_gt_gives_all_negatives():
    matches = Matcher(0.7, 0.3, allow_low_quality=True)(torch.zeros(0, 6))
    assert matches.tolist() == [BELOW_LOW] * 6


def test_sampler_fractions():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 300 + [0] * 1000 + [-1] * 50)
    pos, neg = BalancedSampler(256, 0.5)(labels)
    assert int(pos.sum()) == 128 and int(neg.sum()) == 128
    assert torch.all(labels[pos] == 1) and torch.all(labels[neg] == 0)
    # few positives: negatives fill the batch
    labels = torch.tensor([1] * 10 + [0] * 1000)
    pos, neg = BalancedSampler(256, 0.5)(labels)
    assert int(pos.sum()) == 10 and int(neg.sum()) == 246
    # few candidates: take them all, never the ignored ones
    labels = torch.tensor([1, 0, -1, 0])
    pos, neg = BalancedSampler(256, 0.5)(labels)
    assert pos.tolist() == [True, False, False, False] and neg.tolist() == [False, True, False, True]


def _tiny_rpn(post_test=20):
    from personsearch.models.rpn import RegionProposalNetwork, RPNHead

    gen = AnchorGenerator((32, 64), (0.5, 1.0, 2.0), stride=16)
    return RegionProposalNetwork(
        RPNHead(8, gen.num_anchors_per_location),
        gen,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=32,
        positive_fraction=0.5,
        pre_nms_top_n={"training": 100, "testing": 50},
        post_nms_top_n={"training": 30, "testing": post_test},
        nms_thresh=0.7,
    )


def test_rpn_proposals_within_image_and_top_n():
    torch.manual_seed(0)
    rpn = _tiny_rpn().eval()
    features = torch.randn(2, 8, 8, 6)
    proposals, losses = rpn(features, [(128, 96), (100, 80)])
    assert losses == {}
    for props, (h, w) in zip(proposals, [(128, 96), (100, 80)]):
        assert 0 < props.shape[0] <= 20
        assert torch.all(props[:, 0::2] >= 0) and torch.all(props[:, 0::2] <= w)
        assert torch.all(props[:, 1::2] >= 0) and torch.all(props[:, 1::2] <= h)


def test_rpn_training_losses_with_and_without_persons():
    torch.manual_seed(0)
    rpn = _tiny_rpn().train()
    features = torch.randn(2, 8, 8, 6, requires_grad=True)
    targets = [{"boxes": torch.tensor([[16.0, 16.0, 48.0, 80.0]])}, {"boxes": torch.zeros(0, 4)}]
    proposals, losses = rpn(features, [(128, 96), (128, 96)], targets)
    assert set(losses) == {"loss_rpn_objectness", "loss_rpn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_rpn_box"].item() > 0  # the person has (low-quality) positive anchors
    sum(losses.values()).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert all(p.shape[0] <= 30 for p in proposals)


def test_rpn_without_any_person_has_zero_box_loss():
    torch.manual_seed(0)
    rpn = _tiny_rpn().train()
    _, losses = rpn(torch.randn(1, 8, 8, 6), [(128, 96)], [{"boxes": torch.zeros(0, 4)}])
    assert losses["loss_rpn_box"].item() == 0.0
    assert torch.isfinite(losses["loss_rpn_objectness"])
