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


def test_offset_head_follows_the_reference_size():
    """DICL's DeformRoIPoolPack: Linear(C*14*6 -> 1024) -> ReLU -> Linear(1024 -> 1024) -> ReLU
    -> Linear(1024 -> 2*h*w). At our 14x14 output the head reads the map pooled to 14x6, so the
    first layer keeps the reference's 86,016 inputs instead of 200,704."""
    from personsearch.ops.deform_roi_pool import REFERENCE_OFFSET_GRID

    assert REFERENCE_OFFSET_GRID == (14, 6)
    with torch.device("meta"):  # shapes only: no 360 MB of weights in a test
        module = DeformRoIPool(1024, 14, 1 / 16)
        full = DeformRoIPool(1024, 14, 1 / 16, offset_grid=None)  # mmcv's rule at 14x14
    first, middle, last = module.offset_fc[0], module.offset_fc[2], module.offset_fc[4]
    assert (first.in_features, first.out_features) == (1024 * 14 * 6, 1024)
    assert (middle.in_features, middle.out_features) == (1024, 1024)
    assert (last.in_features, last.out_features) == (1024, 2 * 14 * 14)
    expected = (86016 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 392 + 392)
    assert sum(p.numel() for p in module.parameters()) == expected == 89_532_808
    assert full.offset_fc[0].in_features == 200704
    assert DeformRoIPool(8, (7, 4), 1.0).offset_grid == (7, 4)  # capped at the output size


def test_offset_head_reads_the_average_pooled_map():
    module = DeformRoIPool(2, (4, 4), 1.0, offset_grid=(2, 2), fc_channels=3)
    pooled = torch.arange(2 * 16, dtype=torch.float32).view(1, 2, 4, 4)
    seen = []
    module.offset_fc.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    module.predict_offsets(pooled)
    # channel 0 top-left 2x2 block: (0 + 1 + 4 + 5) / 4 = 2.5
    assert seen[0].shape == (1, 8) and seen[0][0, 0].item() == 2.5


def test_bins_are_padded_per_window_class_not_to_the_largest(monkeypatch):
    """A RoI pooled next to a huge one gives the same values as pooled alone, and the windows
    gathered for its bins stay its own size (the huge RoI does not widen them)."""
    import importlib

    roi_module = importlib.import_module("personsearch.ops.roi_align")
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 3, 80, 80, generator=generator)
    small = torch.tensor([[0.0, 10.0, 10.0, 14.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 0.0, 79.0, 79.0]])
    offsets = torch.randn(2, 2, 3, 3, generator=generator) * 0.1
    alone = deform_roi_pool(features, small, offsets[:1], 3, 1.0, sampling_ratio=0)
    widths = []
    original = roi_module._WindowSum.apply

    def recording(flat_map, pixels, weights, chunk):
        widths.append(pixels.shape[1])
        return original(flat_map, pixels, weights, chunk)

    monkeypatch.setattr(roi_module._WindowSum, "apply", recording)
    together = deform_roi_pool(features, torch.cat([small, huge]), offsets, 3, 1.0, sampling_ratio=0)
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=0)
    assert min(widths) < max(widths)  # separate groups: small windows not padded to the huge ones
