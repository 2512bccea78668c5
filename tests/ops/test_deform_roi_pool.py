import pytest
import torch

from personsearch.ops import DeformRoIPool, deform_roi_pool, roi_align
from roi_reference import reference_pool


def random_case(seed, channels=2, num=4):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(2, channels, 6, 7, generator=g, dtype=torch.float64)
    xy = torch.rand(num, 2, generator=g, dtype=torch.float64) * 10
    wh = torch.rand(num, 2, generator=g, dtype=torch.float64) * 8 + 1
    b = torch.randint(0, 2, (num, 1), generator=g).double()
    return f, torch.cat([b, xy, xy + wh], 1)


def test_zero_offsets_equal_aligned_roi_align():
    f, rois = random_case(0)
    zero = torch.zeros(rois.shape[0], 2, 3, 2, dtype=torch.float64)
    out = deform_roi_pool(f, rois, zero, (3, 2), 0.5, sampling_ratio=0)
    assert torch.allclose(out, roi_align(f, rois, (3, 2), 0.5, 0, aligned=True), atol=1e-12)


def test_offsets_match_loop_reference():
    f, rois = random_case(1)
    g = torch.Generator().manual_seed(5)
    offsets = torch.randn(rois.shape[0], 2, 3, 2, generator=g, dtype=torch.float64)
    for sampling_ratio in (0, 2):
        out = deform_roi_pool(f, rois, offsets, (3, 2), 0.5, sampling_ratio, gamma=0.1)
        ref = reference_pool(f, rois, 3, 2, 0.5, sampling_ratio, True, offsets=offsets, gamma=0.1)
        assert torch.allclose(out, ref, atol=1e-10)


def test_hand_computed_offset_shift():
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    f = (10 * ys + xs).double()[None, None]
    rois = torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]], dtype=torch.float64)  # aligned: [0, 2] on the map
    offsets = torch.tensor([[[[1.0]], [[-0.5]]]], dtype=torch.float64)  # x +0.1*2*1, y -0.1*2*0.5
    out = deform_roi_pool(f, rois, offsets, 1, 1.0, sampling_ratio=1, gamma=0.1)
    # centre (1, 1) shifted to (x 1.2, y 0.9)
    assert out.item() == pytest.approx(10 * 0.9 + 1.2)


def test_gradcheck_features_and_offsets():
    f, rois = random_case(2, channels=1, num=3)
    g = torch.Generator().manual_seed(1)
    # offsets small enough that no sample sits exactly on a pixel edge
    offsets = (torch.rand(rois.shape[0], 2, 2, 2, generator=g, dtype=torch.float64) - 0.5) * 0.7
    f.requires_grad_(True)
    offsets.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, o: deform_roi_pool(x, rois, o, 2, 0.5, 2), (f, offsets), fast_mode=True)


def test_module_starts_as_plain_pooling_and_learns_offsets():
    torch.manual_seed(0)
    f, rois = random_case(3, channels=4)
    f = f.float().requires_grad_(True)
    module = DeformRoIPool(4, (3, 2), 0.5, sampling_ratio=2, fc_channels=16)
    out = module(f, rois.float())
    assert out.shape == (4, 4, 3, 2)
    assert torch.allclose(out, roi_align(f, rois.float(), (3, 2), 0.5, 2, aligned=True), atol=1e-6)
    out.square().sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    last = module.offset_fc[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    # after an offset change the output differs from plain pooling
    with torch.no_grad():
        last.bias.fill_(0.5)
    moved = module(f, rois.float())
    assert not torch.allclose(moved, out, atol=1e-4)


def test_module_shape_errors_and_empty():
    module = DeformRoIPool(3, (14, 6), 1 / 16, 0, fc_channels=8)
    f = torch.randn(1, 3, 10, 10)
    assert module(f, torch.zeros(0, 5)).shape == (0, 3, 14, 6)
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(1, 4, 10, 10), torch.zeros(1, 5))


def test_chunked_offsets_match_reference(monkeypatch):
    import importlib

    roi_module = importlib.import_module("personsearch.ops.roi_align")
    monkeypatch.setattr(roi_module, "_CHUNK_ELEMENTS", 16)  # one bin per chunk
    f, rois = random_case(6, num=5)
    offsets = torch.randn(rois.shape[0], 2, 3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = deform_roi_pool(f, rois, offsets, (3, 2), 0.5, 0, gamma=0.2)
    assert torch.allclose(out, reference_pool(f, rois, 3, 2, 0.5, 0, True, offsets=offsets, gamma=0.2), atol=1e-10)
