"""The assembled model on the "small" backbone and tiny images: training step, detect,
embed_boxes / embed_crops, bf16 + channels_last, build_model kwargs."""

import inspect

import pytest
import torch

from personsearch.models import Detections, PersonSearchModel, TrainOutput, build_model

SMALL = dict(
    backbone="small",
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=30,
    roi_batch_size_per_image=32,
    rpn_batch_size_per_image=64,
    embedding_dim=32,
)
SIZES = [(128, 96), (112, 80)]
TARGETS = [
    {"boxes": torch.tensor([[4.0, 8.0, 40.0, 100.0], [50.0, 20.0, 90.0, 124.0]]), "slots": torch.tensor([5, 2])},
    {"boxes": torch.zeros(0, 4), "slots": torch.zeros(0, dtype=torch.int64)},  # an image without persons
]
CONTRACT_KWARGS = [
    "backbone", "backbone_weights", "frozen_stem", "frozen_bn", "separate_box_head", "roi_pooling",
    "roi_output_size", "roi_sampling_ratio", "embedding_dim", "anchor_sizes", "anchor_ratios",
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_batch_size_per_image", "rpn_positive_fraction",
    "roi_fg_iou_thresh", "roi_bg_iou_thresh", "roi_batch_size_per_image", "roi_positive_fraction",
    "box_score_thresh", "box_nms_thresh", "reid_nms_thresh", "detections_per_image",
    "roi_head", "roi_aligned", "rpn_min_size_train", "rpn_min_size_test", "rpn_box_loss", "roi_box_loss",
    "resnet_style", "pixel_mean", "pixel_std", "channel_order", "anchor_rounding",
]


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 128, 96, generator=g)


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(**{**SMALL, **overrides})


def test_build_model_kwargs_are_exactly_the_contract():
    params = inspect.signature(build_model).parameters
    assert list(params) == CONTRACT_KWARGS
    with pytest.raises(TypeError):
        build_model(backbone="small", not_a_kwarg=1)


def test_training_step_with_an_image_without_persons():
    model = _model().train()
    out = model(_images(), SIZES, TARGETS)
    assert isinstance(out, TrainOutput)
    assert set(out.losses) == {
        "loss_rpn_objectness", "loss_rpn_box", "loss_det_cls", "loss_det_box", "loss_reid_box", "loss_person",
    }
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.losses.values())
    num_rois = out.roi_embeddings.shape[0]
    assert out.roi_embeddings.shape == (num_rois, 32) and num_rois <= 2 * 32
    assert out.roi_slots.shape == (num_rois,) and out.roi_image.shape == (num_rois,)
    assert torch.allclose(out.roi_embeddings.norm(dim=1), torch.ones(num_rois), atol=1e-5)
    assert set(out.roi_slots[out.roi_image == 0].tolist()) <= {-1, 5, 2}
    assert {5, 2} <= set(out.roi_slots.tolist())
    assert torch.all(out.roi_slots[out.roi_image == 1] == -1)
    assert out.gt_embeddings.shape == (2, 32) and out.gt_slots.tolist() == [5, 2] and out.gt_image.tolist() == [0, 0]
    assert out.features.dim() == 4 and out.features.shape[0] == 2
    total = sum(out.losses.values()) + out.roi_embeddings.sum() + out.gt_embeddings.sum()
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_detect_returns_bounded_unit_norm_detections_and_keeps_mode():
    model = _model(box_score_thresh=0.0, detections_per_image=7).train()
    dets = model.detect(_images(), SIZES)
    assert model.training  # mode restored
    assert len(dets) == 2 and all(isinstance(d, Detections) for d in dets)
    for det, (h, w) in zip(dets, SIZES):
        m = det.boxes.shape[0]
        assert 0 < m <= 7
        assert det.scores.shape == (m,) and det.embeddings.shape == (m, 32)
        assert det.boxes.dtype == det.scores.dtype == det.embeddings.dtype == torch.float32
        assert torch.allclose(det.embeddings.norm(dim=1), torch.ones(m), atol=1e-5)
        assert torch.all(det.boxes[:, 2] <= w) and torch.all(det.boxes[:, 3] <= h)


def test_embed_boxes_and_crops_shapes_unit_norm():
    model = _model().eval()
    boxes = [TARGETS[0]["boxes"], torch.zeros(0, 4)]
    feats = model.embed_boxes(_images(), SIZES, boxes)
    assert [f.shape for f in feats] == [(2, 32), (0, 32)]
    assert torch.allclose(feats[0].norm(dim=1), torch.ones(2), atol=1e-5)
    crops = torch.randn(3, 3, 64, 32)
    crop_feats = model.embed_crops(crops)
    assert crop_feats.shape == (3, 32)
    assert torch.allclose(crop_feats.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.embed_crops(torch.zeros(0, 3, 64, 32)).shape == (0, 32)


def test_embed_crops_trains_with_gradients():
    model = _model().train()
    crop_feats = model.embed_crops(torch.randn(1, 3, 64, 32))  # a single crop in train mode
    crop_feats.sum().backward()
    assert any(p.grad is not None for p in model.roi_heads.embedding.parameters())


def test_bf16_channels_last_close_to_fp32():
    model = _model(box_score_thresh=0.0).eval()
    images = _images(1)
    boxes = [TARGETS[0]["boxes"], torch.tensor([[10.0, 10.0, 60.0, 100.0]])]
    ref = model.embed_boxes(images, SIZES, boxes)
    ref_dets = model.detect(images, SIZES)
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.embed_boxes(images, SIZES, boxes)
        low_dets = model.detect(images, SIZES)
    for a, b in zip(ref, low):
        assert b.dtype == torch.float32
        assert torch.all((a * b).sum(dim=1) > 0.98)  # cosine similarity
    for ref_det, det in zip(ref_dets, low_dets):
        assert det.boxes.dtype == torch.float32 and det.embeddings.dtype == torch.float32
        assert det.boxes.shape[0] > 0
        assert torch.allclose(det.embeddings.norm(dim=1), torch.ones(det.boxes.shape[0]), atol=1e-4)
        # the top box is (almost) the same; random weights make lower ranks unstable
        assert abs(ref_det.scores[0].item() - det.scores[0].item()) < 0.02


def test_deform_roi_pool_and_shared_head_variants():
    model = _model(roi_pooling="deform_roi_pool", separate_box_head=False).train()
    assert model.roi_heads.box_head is model.roi_heads.reid_head
    out = model(_images(), SIZES, TARGETS)
    assert all(torch.isfinite(v) for v in out.losses.values())
    sum(out.losses.values()).backward()


def test_forward_in_eval_mode_is_refused():
    model = _model().eval()
    with pytest.raises(RuntimeError, match="detect"):
        model(_images(), SIZES, TARGETS)


def test_assembled_from_parts():
    model = _model()
    assert isinstance(model, PersonSearchModel)
    clone = PersonSearchModel(model.backbone, model.rpn, model.roi_heads)
    assert clone.embedding_dim == 32


def test_embed_crops_of_different_sizes_in_a_padded_batch():
    model = _model().eval()
    crops = torch.zeros(2, 3, 64, 32)
    crops[0] = torch.randn(3, 64, 32)
    crops[1, :, :48, :24] = torch.randn(3, 48, 24)
    feats = model.embed_crops(crops, [(64, 32), (48, 24)])
    assert feats.shape == (2, 32)
    assert torch.allclose(feats.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="crop sizes"):
        model.embed_crops(crops, [(64, 32)])
