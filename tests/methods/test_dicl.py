"""methods/dicl.py: every positive RoI gets the crop feature of its own GT (slots unsorted,
several RoIs per GT, background untouched), and the fused test-time extractors' shapes and
values with a real tiny model."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from personsearch.losses import fuse_features
from personsearch.methods.dicl import DICLMethod, fused_extractors


class _CropMeanModel(nn.Module):
    """embed_crops -> per crop the mean of each channel. With images whose channels are
    (batch index, x, y), that is (image, box centre x, box centre y): it names the GT box."""

    embedding_dim = 3

    def embed_crops(self, crops, crop_sizes=None):
        return crops.mean(dim=(2, 3))


def _coordinate_images(batch=2, height=48, width=48):
    # (boxes stay off the border, where RoIAlign clamps and the mean is no longer the centre)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([torch.stack([torch.full_like(xs, float(b)), xs, ys]) for b in range(batch)])


def test_reid_features_maps_each_positive_roi_to_its_own_gt_crop():
    images = _coordinate_images()
    # GT boxes in target order; their slots are deliberately not sorted
    targets = [{"boxes": torch.tensor([[2.0, 2.0, 10.0, 18.0], [20.0, 4.0, 28.0, 20.0]]),
                "slots": torch.tensor([7, 2])},
               {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "slots": torch.tensor([5])}]
    centres = {7: [0.0, 6.0, 10.0], 2: [0.0, 24.0, 12.0], 5: [1.0, 20.0, 30.0]}
    roi_slots = torch.tensor([5, -1, 7, 2, 2, -1, 5])
    roi_embeddings = torch.arange(21, dtype=torch.float32).reshape(7, 3)
    out = SimpleNamespace(roi_slots=roi_slots, roi_embeddings=roi_embeddings,
                          gt_slots=torch.tensor([7, 2, 5]))
    method = DICLMethod(use_sim=False, use_kl=False)
    batch = {"images": images, "targets": targets}
    feats, losses = method.reid_features(_CropMeanModel(), batch, out)
    assert losses == {}
    expected = roi_embeddings.clone()
    for row, slot in enumerate(roi_slots.tolist()):
        if slot >= 0:
            expected[row] = (roi_embeddings[row] + torch.tensor(centres[slot])) / 2
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=0)
    assert torch.equal(roi_embeddings, torch.arange(21, dtype=torch.float32).reshape(7, 3))


def test_reid_features_losses_use_the_same_pairing_and_fusion_can_be_off():
    images = _coordinate_images()
    targets = [{"boxes": torch.tensor([[2.0, 2.0, 10.0, 18.0], [20.0, 4.0, 28.0, 20.0]]),
                "slots": torch.tensor([9, 1])},
               {"boxes": torch.zeros(0, 4), "slots": torch.zeros(0, dtype=torch.int64)}]
    roi_slots = torch.tensor([1, 9, -1])
    roi_embeddings = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = SimpleNamespace(roi_slots=roi_slots, roi_embeddings=roi_embeddings,
                          gt_slots=torch.tensor([9, 1]))
    method = DICLMethod(use_kl=False, fuse_memory_features=False)
    feats, losses = method.reid_features(_CropMeanModel(), {"images": images, "targets": targets},
                                         out)
    assert torch.equal(feats, roi_embeddings)
    # crop of slot 1 = (0, 24, 12), of slot 9 = (0, 6, 10): f.g = 24 and 0
    assert losses["loss_sim"].item() == pytest.approx(1 - (24 + 0) / 2, abs=1e-4)


TINY = dict(backbone="small", rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=10,
            box_score_thresh=0.0, detections_per_image=5)


def test_fused_extractors_shapes_and_values_with_a_tiny_model():
    from personsearch.models import build_model

    torch.manual_seed(0)
    model = build_model(**TINY).eval()
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    sizes = [(64, 96)]
    extractors = fused_extractors(crop_size=(32, 16))
    with torch.no_grad():
        ((boxes, scores, feats),) = extractors["gallery_extractor"](model, images, sizes)
        (det,) = model.detect(images, sizes)
        dim = model.embedding_dim
        assert boxes.shape == (len(det.boxes), 4) and scores.shape == (len(det.boxes),)
        assert 0 < len(boxes) <= 5
        assert feats.shape == (len(boxes), dim)
        from personsearch.models.exemplars import crop_and_resize, person_rois

        crops = crop_and_resize(images, person_rois([det.boxes]), (32, 16))
        torch.testing.assert_close(feats, fuse_features(det.embeddings, model.embed_crops(crops)))

        query_boxes = [torch.tensor([[4.0, 4.0, 30.0, 60.0], [40.0, 2.0, 90.0, 50.0]])]
        (query_feats,) = extractors["query_extractor"](model, images, sizes, query_boxes)
        assert query_feats.shape == (2, dim)
        scene = model.embed_boxes(images, sizes, query_boxes)[0]
        crop = model.embed_crops(crop_and_resize(images, person_rois(query_boxes), (32, 16)))
        torch.testing.assert_close(query_feats, fuse_features(scene, crop))
