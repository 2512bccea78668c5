"""CGPS's single RoI head with tiny hand-built res5 heads: one stage, embedding layout, losses,
inference filtering; and its wiring through build_model."""

import pytest
import torch
from torch import nn

from personsearch.models import build_model
from personsearch.models.cgps_head import CGPSEmbedding, CGPSRoIHeads
from personsearch.models.roi_heads import FastRCNNPredictor, ResHead, RoIPooler
from personsearch.ops.boxes import box_iou

C4, C5 = 8, 16
SIZES = [(128, 96), (128, 96)]
TARGETS = [
    {"boxes": torch.tensor([[4.0, 8.0, 40.0, 100.0], [50.0, 20.0, 90.0, 120.0]]), "slots": torch.tensor([11, 4])},
    {"boxes": torch.zeros(0, 4), "slots": torch.zeros(0, dtype=torch.int64)},  # no persons
]


def _heads(score_thresh=0.05, detections_per_image=100, box_loss="l1"):
    torch.manual_seed(0)
    return CGPSRoIHeads(
        pooler=RoIPooler("roi_align", C4, 14, 0, 1.0 / 16, aligned=True),
        head=ResHead(nn.Sequential(nn.Conv2d(C4, C5, 3, stride=2, padding=1), nn.ReLU())),
        box_predictor=FastRCNNPredictor(C5),
        embedding=CGPSEmbedding(C4, C5, 32),
        fg_iou_thresh=0.5, bg_iou_thresh=0.1, batch_size_per_image=16, positive_fraction=0.5,
        score_thresh=score_thresh, nms_thresh=0.4, detections_per_image=detections_per_image, box_loss=box_loss,
    )


def _proposals(num, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([60.0, 80.0])
    return torch.cat([xy, xy + 10 + torch.rand(num, 2, generator=g) * 30], dim=1)


def test_embedding_is_normalised_concat_res5_then_res4_without_batchnorm():
    embedding = CGPSEmbedding(3, 2, 4)
    with torch.no_grad():
        embedding.project_res5.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        embedding.project_res5.bias.zero_()
        embedding.project_res4.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
        embedding.project_res4.bias.copy_(torch.tensor([0.0, 1.0]))
    out = embedding(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[3.0, 0.0]]))
    # concat = [3, 0 | 2, 1], norm sqrt(14)
    assert torch.allclose(out, torch.tensor([[3.0, 0.0, 2.0, 1.0]]) / 14 ** 0.5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in embedding.modules())


def test_training_is_one_stage_with_cgps_losses_and_slots():
    heads = _heads()
    features = torch.randn(2, C4, 8, 6)
    out = heads(features, [_proposals(40, 1), _proposals(40, 2)], SIZES, TARGETS)
    assert set(out.losses) == {"loss_det_cls", "loss_det_box"}  # no second stage, no person logit
    assert out.roi_embeddings.shape[1] == 32 and out.gt_embeddings.shape == (2, 32)
    assert torch.allclose(out.roi_embeddings.norm(dim=1), torch.ones(out.roi_embeddings.shape[0]))
    positive = out.roi_slots >= 0
    assert set(out.roi_slots[positive].tolist()) <= {11, 4}
    # every positive RoI overlaps its GT by >= 0.5; every background RoI < 0.1 with all GT
    boxes, image = out.roi_boxes, out.roi_image
    first = image == 0
    iou = box_iou(boxes[first], TARGETS[0]["boxes"]).max(dim=1).values
    assert bool((iou[positive[first]] >= 0.5).all()) and bool((iou[~positive[first]] < 0.1).all())
    # GT embeddings are the head's embeddings at the exact GT boxes
    assert torch.allclose(out.gt_embeddings, heads.embed_boxes(features, [TARGETS[0]["boxes"], torch.zeros(0, 4)])[0], atol=1e-6)
    sum(out.losses.values()).backward()
    assert heads.embedding.project_res4.weight.grad is None  # embeddings take no detection loss


def test_detect_scores_are_softmax_person_probability_and_filters():
    heads = _heads(score_thresh=0.5, detections_per_image=3).eval()
    with torch.no_grad():
        heads.box_predictor.cls_score.weight.zero_()
        heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 1.0]))  # every score sigmoid(1)
        heads.box_predictor.bbox_pred.weight.zero_()
    proposals = torch.tensor([[0.0, 0.0, 20.0, 40.0], [1.0, 0.0, 21.0, 40.0], [50.0, 50.0, 80.0, 100.0],
                              [10.0, 60.0, 30.0, 120.0], [60.0, 0.0, 90.0, 30.0]])
    detections = heads.detect(torch.randn(1, C4, 8, 6), [proposals], SIZES[:1])[0]
    assert torch.allclose(detections.scores, torch.full((3,), torch.sigmoid(torch.tensor(1.0)).item()))
    assert detections.boxes.shape == (3, 4)  # 4 left after NMS (the first two overlap), capped at 3
    embeddings = heads.embed_boxes(torch.randn(1, C4, 8, 6), [proposals])[0]
    assert embeddings.shape == (5, 32)


def test_build_model_wires_the_cgps_head():
    model = build_model(backbone="small", roi_head="cgps", roi_aligned=True, roi_sampling_ratio=0, embedding_dim=32,
                        rpn_min_size_train=8, rpn_min_size_test=16, rpn_box_loss="l1", roi_box_loss="l1")
    assert isinstance(model.roi_heads, CGPSRoIHeads) and model.embedding_dim == 32
    assert model.roi_heads.pooler.aligned and model.roi_heads.pooler.sampling_ratio == 0
    assert model.rpn.min_size == {"training": 8.0, "testing": 16.0}
    assert model.rpn.box_loss == "l1" and model.roi_heads.box_loss == "l1"
    assert not any(name.startswith("roi_heads.reid") for name in model.state_dict())
    with pytest.raises(ValueError, match="roi_head must be one of"):
        build_model(backbone="small", roi_head="three_stage")
    with pytest.raises(ValueError, match="rpn_box_loss must be one of"):
        build_model(backbone="small", rpn_box_loss="huber")
