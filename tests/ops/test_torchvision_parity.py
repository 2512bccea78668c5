"""Parity with torchvision's compiled ops; runs only where they load (a matching CUDA/CPU install)."""

import pytest
import torch

from personsearch.ops import _torchvision
from personsearch.ops.nms import _pure_nms
from personsearch.ops.roi_align import roi_sample_bins

pytestmark = pytest.mark.skipif(
    not _torchvision.torchvision_ops_available(),
    reason=f"torchvision compiled ops unavailable here ({_torchvision.unavailable_reason()})",
)


def test_nms_parity_with_ties():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + torch.rand(3000, 2, generator=g) * 100 + 1], 1)
    scores = torch.randint(0, 20, (3000,), generator=g).float() / 20
    ops = _torchvision.compiled_ops() or _torchvision._load()
    assert torch.equal(_pure_nms(boxes, scores, 0.5, None), ops.nms(boxes, scores, 0.5))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_parity(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 8, 20, 30, generator=g, dtype=torch.float64, requires_grad=True)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 400 - 20
    rois = torch.cat([torch.randint(0, 2, (50, 1), generator=g).double(), xy, xy + torch.rand(50, 2, generator=g, dtype=torch.float64) * 200], 1)
    ops = _torchvision._load()
    ours = roi_sample_bins(f, rois, (7, 7), 1 / 16, sampling_ratio, aligned)
    theirs = ops.roi_align(f, rois, 1 / 16, 7, 7, sampling_ratio, aligned)
    assert torch.allclose(ours, theirs, atol=1e-10)
    grad = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad(ours, f, grad)
    (g_theirs,) = torch.autograd.grad(theirs, f, grad)
    assert torch.allclose(g_ours, g_theirs, atol=1e-10)


def test_env_var_forces_pure_ops(monkeypatch):
    monkeypatch.setenv(_torchvision.PURE_OPS_ENV, "1")
    assert _torchvision.compiled_ops() is None
