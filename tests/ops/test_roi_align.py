import pytest
import torch

from personsearch.ops import roi_align
from roi_reference import reference_pool


@pytest.fixture(autouse=True)
def pure_ops(monkeypatch):
    monkeypatch.setenv("PERSONSEARCH_PURE_OPS", "1")


def feature_4x4():
    # value = 10 * y + x: bilinear interpolation of this map is exact, 10 * y + x
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    return (10 * ys + xs).double()[None, None]


def test_hand_computed_single_bin():
    f = feature_4x4()
    rois = torch.tensor([[0, 0.5, 1.0, 2.5, 2.0]], dtype=torch.float64)
    # 1 bin, 2x2 samples at y in {1.25, 1.75}, x in {1.0, 2.0}: mean = 10*1.5 + 1.5
    out = roi_align(f, rois, (1, 1), 1.0, sampling_ratio=2, aligned=False)
    assert out.item() == pytest.approx(16.5)
    # aligned: shift -0.5 -> y in {0.75, 1.25}, x in {0.5, 1.5}: 10*1 + 1
    out = roi_align(f, rois, (1, 1), 1.0, sampling_ratio=2, aligned=True)
    assert out.item() == pytest.approx(11.0)


def test_hand_computed_2x2_bins_with_spatial_scale():
    f = feature_4x4()
    # image coords /2: roi [0, 0, 2, 2] on the map, bins 1x1, one sample at the bin centre
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]], dtype=torch.float64)
    out = roi_align(f, rois, 2, 0.5, sampling_ratio=1)
    expected = torch.tensor([[10 * 0.5 + 0.5, 10 * 0.5 + 1.5], [10 * 1.5 + 0.5, 10 * 1.5 + 1.5]])
    assert torch.allclose(out[0, 0], expected.double())


def test_boundary_rules_hand_computed():
    f = feature_4x4()
    # sample at x = 3.5 (beyond W-1 = 3 but <= W = 4): clamped to column 3; y = -0.5 clamped to 0
    rois = torch.tensor([[0, 3.0, -1.0, 4.0, 0.0]], dtype=torch.float64)
    out = roi_align(f, rois, 1, 1.0, sampling_ratio=1)
    assert out.item() == pytest.approx(3.0)
    # sample at y = -1.5 < -1: contributes 0
    rois = torch.tensor([[0, 0.0, -2.0, 2.0, -1.0]], dtype=torch.float64)
    assert roi_align(f, rois, 1, 1.0, sampling_ratio=1).item() == 0.0
    # non-aligned RoIs smaller than one pixel are grown to 1x1: centre (x=1.5, y=1.5)
    rois = torch.tensor([[0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert roi_align(f, rois, 1, 1.0, sampling_ratio=1).item() == pytest.approx(16.5)
    # aligned zero-size RoI with adaptive sampling: zero samples -> 0
    assert roi_align(f, rois, 1, 1.0, sampling_ratio=-1, aligned=True).item() == 0.0


def random_case(seed, batch=2, channels=3, height=9, width=11, num=13, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)
    xy = torch.rand(num, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height]) / scale * 1.2 - 3
    wh = torch.rand(num, 2, generator=g, dtype=torch.float64) * 14
    b = torch.randint(0, batch, (num, 1), generator=g).double()
    rois = torch.cat([b, xy, xy + wh], 1)
    return f, rois


@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_matches_loop_reference(sampling_ratio, aligned):
    f, rois = random_case(0)
    out = roi_align(f, rois, (3, 2), 0.5, sampling_ratio, aligned)
    ref = reference_pool(f, rois, 3, 2, 0.5, sampling_ratio, aligned)
    assert out.shape == (13, 3, 3, 2)
    assert torch.allclose(out, ref, atol=1e-10)


def test_float32_and_rois_order_preserved():
    f, rois = random_case(1, num=40)
    out32 = roi_align(f.float(), rois.float(), 4, 0.5, -1)
    ref = reference_pool(f, rois, 4, 4, 0.5, -1, False)
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), ref, atol=1e-4)


def test_gradcheck_float64():
    f, rois = random_case(2, batch=2, channels=1, height=5, width=6, num=4)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, (2, 3), 0.5, -1, False), (f,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, 2, 0.5, 2, True), (f,), fast_mode=True)


def test_empty_rois_and_bad_input():
    f = feature_4x4()
    assert roi_align(f, torch.zeros(0, 5, dtype=torch.float64), 2, 1.0).shape == (0, 1, 2, 2)
    with pytest.raises(ValueError, match="K, 5"):
        roi_align(f, torch.zeros(3, 4), 2, 1.0)
    with pytest.raises(ValueError, match="batch index"):
        roi_align(f, torch.tensor([[3.0, 0, 0, 1, 1]], dtype=torch.float64), 2, 1.0)


def test_bf16_autocast_and_channels_last():
    f, rois = random_case(3, channels=8)
    ref = roi_align(f.float(), rois.float(), 3, 0.5, 2)
    out_cl = roi_align(f.float().contiguous(memory_format=torch.channels_last), rois.float(), 3, 0.5, 2)
    assert torch.allclose(out_cl, ref, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf = roi_align(f.float().bfloat16(), rois.float(), 3, 0.5, 2)
    assert out_bf.dtype == torch.bfloat16
    assert torch.allclose(out_bf.float(), ref, atol=0.05, rtol=0.02)


def test_many_small_chunks_match_reference_and_gradcheck(monkeypatch):
    import importlib

    roi_module = importlib.import_module("personsearch.ops.roi_align")
    monkeypatch.setattr(roi_module, "_CHUNK_ELEMENTS", 64)  # one or two RoIs per chunk
    f, rois = random_case(4, num=25)
    for sampling_ratio, aligned in ((-1, False), (2, True)):
        out = roi_align(f, rois, (3, 4), 0.5, sampling_ratio, aligned)
        assert torch.allclose(out, reference_pool(f, rois, 3, 4, 0.5, sampling_ratio, aligned), atol=1e-10)
    f, rois = random_case(5, channels=2, height=6, width=7, num=6)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, (2, 3), 0.5, -1, False), (f,), fast_mode=True)
