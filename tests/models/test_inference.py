"""Inference rewrites: BatchNorm folded into the preceding conv (hand-computed values and the
whole model), channels_last, BN that still uses batch statistics left alone."""

import torch
from torch import nn

from personsearch.models import build_model
from personsearch.models.backbones import FrozenBatchNorm2d
from personsearch.models.inference import fold_batchnorms, prepare_for_inference


def _frozen_bn(weight, bias, mean, var, eps=1.0):
    bn = FrozenBatchNorm2d(1, eps=eps)
    bn.weight.fill_(weight)
    bn.bias.fill_(bias)
    bn.running_mean.fill_(mean)
    bn.running_var.fill_(var)
    return bn


def test_fold_hand_computed():
    # conv weight 2, BN gamma 3 beta 1 mean 0.5 var 3 eps 1: scale = 3 / sqrt(4) = 1.5,
    # shift = 1 - 0.5 * 1.5 = 0.25 -> folded weight 3, bias 0.25; x = 2 -> 6.25
    conv = nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(2.0)
    block = nn.Sequential(conv, _frozen_bn(3.0, 1.0, 0.5, 3.0))
    assert fold_batchnorms(block) == 1
    assert isinstance(block[1], nn.Identity)
    assert block[0].weight.item() == 3.0 and block[0].bias.item() == 0.25
    assert block(torch.full((1, 1, 1, 1), 2.0)).item() == 6.25


def test_fold_keeps_existing_conv_bias():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    conv.weight.data.fill_(2.0)
    conv.bias.data.fill_(-1.0)  # (2x - 1 - 0.5) * 1.5 + 1 at x = 2 -> 4.75
    block = nn.Sequential(conv, _frozen_bn(3.0, 1.0, 0.5, 3.0))
    fold_batchnorms(block)
    assert block(torch.full((1, 1, 1, 1), 2.0)).item() == 4.75


def test_training_batchnorm_and_unknown_order_are_not_folded():
    train_bn = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)).train()
    assert fold_batchnorms(train_bn) == 0 and isinstance(train_bn[1], nn.BatchNorm2d)
    mismatched = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(3).eval())  # channel count differs
    assert fold_batchnorms(mismatched) == 0
    bn_first = nn.Sequential(nn.BatchNorm2d(2).eval(), nn.Conv2d(2, 4, 3))  # BN before the conv
    assert fold_batchnorms(bn_first) == 0


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            n = module.num_features
            with torch.no_grad():
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.2 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))


def test_prepared_model_matches_reference():
    torch.manual_seed(0)
    model = build_model(backbone="small", embedding_dim=32, rpn_post_nms_top_n_test=30, box_score_thresh=0.0).eval()
    _randomise_batchnorms(model)
    bn_count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    images = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    sizes = [(128, 96)]
    boxes = [torch.tensor([[4.0, 8.0, 40.0, 100.0], [50.0, 20.0, 90.0, 124.0]])]
    with torch.no_grad():
        reference_feats = model.backbone(images)
        (reference_emb,) = model.embed_boxes(images, sizes, boxes)
        (reference_det,) = model.detect(images, sizes)

    prepare_for_inference(model)
    assert bn_count > 0  # every 2-d BN (backbone, both res5 heads) is folded away
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())
    conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    cl_images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(cl_images), reference_feats, rtol=1e-4, atol=1e-4)
        (emb,) = model.embed_boxes(cl_images, sizes, boxes)
        (det,) = model.detect(cl_images, sizes)
    torch.testing.assert_close(emb, reference_emb, rtol=1e-4, atol=1e-4)
    assert det.boxes.shape[0] == reference_det.boxes.shape[0] > 0
    torch.testing.assert_close(det.boxes, reference_det.boxes, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(det.embeddings, reference_det.embeddings, rtol=1e-3, atol=1e-3)


def test_test_proposals_setting():
    import pytest

    from personsearch.models.inference import current_test_proposals, set_test_proposals

    torch.manual_seed(0)
    model = build_model(backbone="small", embedding_dim=32, rpn_post_nms_top_n_test=30).eval()
    images = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.backbone(images)
        assert model.rpn(features, [(128, 96)])[0][0].shape[0] == 30
        set_test_proposals(model, 7)
        assert current_test_proposals(model) == 7
        assert model.rpn(features, [(128, 96)])[0][0].shape[0] == 7
    assert model.rpn.post_nms_top_n["training"] != 7  # training is untouched
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            set_test_proposals(model, bad)


def test_sequential_with_its_own_forward_is_not_folded_and_layout_is_kept():
    class Reordered(nn.Sequential):  # applies its BN before the conv: folding would be wrong
        def forward(self, x):
            return self[0](self[1](x))

    reordered = Reordered(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2).eval())
    assert fold_batchnorms(reordered) == 0
    plain = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4).eval()).to(memory_format=torch.channels_last)
    assert fold_batchnorms(plain) == 1
    assert plain[0].weight.is_contiguous(memory_format=torch.channels_last)
