"""models/exemplars.py: background filtering by label maps, RoI layout, crop sizes, the
original-scale crops (sizes, min-side enlargement, padding) and exemplar embedding shapes with a
tiny real model."""

import pytest
import torch

from personsearch.models.exemplars import (black_value, crop_and_resize, exemplar_embeddings,
                                           filter_background, original_scale_crops, person_rois)


def test_filter_background_keeps_only_person_k_pixels():
    images = torch.randn(2, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    # label map smaller than the padded batch (the unpadded image is 5x7)
    mask = torch.zeros(5, 7, dtype=torch.uint8)
    mask[0:3, 0:2] = 1   # box 0
    mask[2:5, 4:7] = 2   # box 1
    boxes = [torch.zeros(2, 4), torch.zeros(1, 4)]
    out = filter_background(images, boxes, [mask, None])
    assert len(out) == 3
    black = black_value(images.device, images.dtype).expand(3, 6, 8)
    for k, person in enumerate(out[:2]):
        inside = torch.zeros(6, 8, dtype=torch.bool)
        inside[:5, :7] = mask == k + 1
        assert torch.equal(person[:, inside], images[0][:, inside])
        assert torch.equal(person[:, ~inside], black[:, ~inside])
    assert torch.equal(out[2], images[1])  # no mask: unchanged


def test_black_value_is_a_black_pixel_after_normalisation():
    from personsearch.data.transforms import normalize

    black = normalize(torch.zeros(3, 1, 1))
    torch.testing.assert_close(black_value(torch.device("cpu"), torch.float32), black)


def test_filter_background_without_masks_returns_the_images():
    images = torch.randn(2, 3, 4, 4)
    out = filter_background(images, [torch.zeros(1, 4), torch.zeros(2, 4)], None)
    assert [o.data_ptr() == images[i].data_ptr() for o, i in zip(out, (0, 1, 1))] == [True] * 3
    assert filter_background(images, [torch.zeros(0, 4), torch.zeros(0, 4)], None) == []


def test_person_rois_prefix_the_batch_index():
    rois = person_rois([torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4),
                        torch.tensor([[5.0, 6.0, 7.0, 8.0], [0.0, 0.0, 1.0, 1.0]])])
    assert rois.tolist() == [[0, 1, 2, 3, 4], [2, 5, 6, 7, 8], [2, 0, 0, 1, 1]]
    assert person_rois([]).shape == (0, 5)


def test_crop_and_resize_size_and_content():
    ys, xs = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(24.0) + 0.5, indexing="ij")
    images = torch.stack([torch.stack([xs, ys, torch.full_like(xs, 7.0)])] * 2)
    rois = torch.tensor([[0, 4.0, 2.0, 12.0, 30.0], [1, 10.0, 8.0, 20.0, 16.0]])
    crops = crop_and_resize(images, rois, (10, 6))
    assert crops.shape == (2, 3, 10, 6)
    # a linear image resized by bilinear RoIAlign: the crop's mean is the box centre
    torch.testing.assert_close(crops[:, :2].mean(dim=(2, 3)), torch.tensor([[8.0, 16.0], [15.0, 12.0]]))
    torch.testing.assert_close(crops[:, 2], torch.full((2, 10, 6), 7.0))
    assert crop_and_resize(images, torch.zeros(0, 5), (10, 6)).shape == (0, 3, 10, 6)


def test_original_scale_crops_sizes_content_and_padding():
    images = torch.randn(2, 3, 40, 30, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[2.3, 1.0, 10.7, 20.0],     # x 2..11, y 1..20 -> 19 x 9
                          [5.0, 10.0, 30.0, 39.2]])   # x 5..30, y 10..40 -> 30 x 25
    batch, sizes = original_scale_crops(images, boxes, min_side=4)
    assert sizes == [(19, 9), (30, 25)]
    assert batch.shape == (2, 3, 30, 25)
    assert torch.equal(batch[0, :, :19, :9], images[0, :, 1:20, 2:11])
    assert torch.equal(batch[1], images[1, :, 10:40, 5:30])
    assert torch.count_nonzero(batch[0, :, 19:, :]) == 0 and torch.count_nonzero(batch[0, :, :, 9:]) == 0


def test_original_scale_crops_enlarge_short_sides_to_min_side():
    images = torch.ones(2, 3, 40, 30)
    boxes = torch.tensor([[2.0, 1.0, 11.0, 20.0], [0.0, 0.0, 30.0, 40.0]])
    batch, sizes = original_scale_crops(images, boxes, min_side=12)
    assert sizes == [(19, 12), (40, 30)]
    torch.testing.assert_close(batch[0, :, :19, :12], torch.ones(3, 19, 12))
    _, sizes = original_scale_crops(images, torch.tensor([[3.0, 3.0, 5.0, 6.0]]), min_side=32)
    assert sizes == [(32, 32)]


TINY = dict(backbone="small", rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=10,
            box_score_thresh=0.0, detections_per_image=5)


@pytest.fixture(scope="module")
def tiny_model():
    from personsearch.models import build_model

    torch.manual_seed(0)
    return build_model(**TINY)


def test_exemplar_embeddings_shape_in_train_mode(tiny_model):
    model = tiny_model.train()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    boxes = [torch.tensor([[4.0, 4.0, 30.0, 60.0]]), torch.tensor([[40.0, 2.0, 90.0, 50.0]])]
    mask = torch.zeros(64, 96, dtype=torch.uint8)
    mask[10:50, 8:24] = 1
    exemplars = exemplar_embeddings(model, images, boxes, [(32, 16), (64, 32)], [mask, None])
    assert exemplars.shape == (2, 3, model.embedding_dim)
    torch.testing.assert_close(exemplars.norm(dim=2), torch.ones(2, 3))
    exemplars.sum().backward()  # the branch trains the shared backbone
    assert any(p.grad is not None for p in model.backbone.parameters())
    model.zero_grad()


def test_exemplar_embeddings_without_original_scale_repeats_the_first_scale(tiny_model):
    model = tiny_model.eval()
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    boxes = [torch.tensor([[4.0, 4.0, 30.0, 60.0], [40.0, 2.0, 90.0, 50.0]])]
    with torch.no_grad():
        exemplars = exemplar_embeddings(model, images, boxes, [(32, 16)], original_scale=False)
    assert exemplars.shape == (2, 2, model.embedding_dim)
    assert torch.equal(exemplars[:, 0], exemplars[:, 1])
    with torch.no_grad():
        empty = exemplar_embeddings(model, images, [torch.zeros(0, 4)], [(32, 16)])
    assert empty.shape == (0, 2, model.embedding_dim)


def _reference_exemplars(model, images, boxes_per_image, scales, masks):
    """The definition: one background-filtered full image per person, RoIAlign on those."""
    filtered = torch.stack(filter_background(images, boxes_per_image, masks))
    boxes = torch.cat(boxes_per_image)
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], dim=1)
    per_scale = [model.embed_crops(crop_and_resize(filtered, rois, size)) for size in scales]
    crops, sizes = original_scale_crops(filtered, boxes)
    return torch.stack([model.embed_crops(crops, sizes), *per_scale], dim=1)


def test_windowed_exemplars_match_the_full_image_definition(tiny_model):
    """Crop-before-mask (a window per person, boxes read once) gives the definition's
    embeddings: exactly without masks, to float rounding with masks (the RoIs are shifted into
    each window, a few 1e-7 on the unit embeddings)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 96, 128, generator=generator)
    boxes = [torch.tensor([[3.3, 4.7, 40.2, 90.1], [60.5, 10.25, 127.9, 95.9]]),
             torch.tensor([[0.0, 0.0, 20.0, 30.0]])]
    masks = [torch.randint(0, 3, (90, 120), dtype=torch.uint8, generator=generator), None]
    tiny_model.eval()
    with torch.no_grad():
        plain = exemplar_embeddings(tiny_model, images, boxes, [(32, 16), (64, 32)], None)
        assert torch.equal(plain, _reference_exemplars(tiny_model, images, boxes, [(32, 16), (64, 32)], None))
        masked = exemplar_embeddings(tiny_model, images, boxes, [(32, 16), (64, 32)], masks)
        reference = _reference_exemplars(tiny_model, images, boxes, [(32, 16), (64, 32)], masks)
    assert torch.equal(masked[:, 0], reference[:, 0])  # original scale: the same pixels
    torch.testing.assert_close(masked, reference, atol=2e-6, rtol=0)


def test_exemplars_without_persons_still_run_the_branch_in_training(tiny_model):
    """A batch without persons calls the same layers (empty batches) and stays on the graph,
    so distributed processes make the same SyncBatchNorm / DDP calls."""
    calls = []
    handle = tiny_model.backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    tiny_model.train()
    out = exemplar_embeddings(tiny_model, torch.zeros(1, 3, 64, 64), [torch.zeros(0, 4)], [(32, 16)], None)
    handle.remove()
    assert out.shape == (0, 2, tiny_model.embedding_dim) and out.requires_grad
    assert calls == [0, 0]  # one resized scale + the original scale
