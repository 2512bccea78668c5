"""The GPU-facing parts of the ops that a CPU can check: RoI coordinates reach the RoIAlign
kernel in float32 under bf16 autocast (bf16 would put 1499.3 px on 1496), the one-time
warning when CUDA runs the pure ops, and the larger chunk budget on CUDA."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from personsearch.ops import _torchvision, roi_align
from personsearch.models import exemplars

ROI_ALIGN_MODULE = importlib.import_module("personsearch.ops.roi_align")  # the name is shadowed
FAR_BOX = [0.0, 1100.25, 20.5, 1499.3, 1460.75]  # batch index, x1, y1, x2, y2


class _RecordingOps:
    """Stands in for torch.ops.torchvision: records what roi_align receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def roi_align(self, features, rois, scale, out_h, out_w, sampling_ratio, aligned):
        self.calls.append((features, rois))
        return features.new_zeros((rois.shape[0], features.shape[1], out_h, out_w))


def test_compiled_roi_align_gets_float32_boxes_under_bf16_autocast(monkeypatch):
    ops = _RecordingOps()
    monkeypatch.setattr(ROI_ALIGN_MODULE, "compiled_ops", lambda: ops)
    features = torch.randn(1, 4, 8, 8).bfloat16()
    rois = torch.tensor([FAR_BOX])
    assert torch.tensor(1499.3).bfloat16().item() == 1496.0  # what the old cast did
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_align(features, rois, (2, 2), 1 / 16)
    (seen_features, seen_rois), = ops.calls
    assert seen_rois.dtype == torch.float32 and seen_features.dtype == torch.float32
    assert torch.equal(seen_rois, rois)  # 1499.3 arrives as 1499.3 (float32)
    assert out.dtype == torch.bfloat16


def test_pure_roi_align_same_under_bf16_autocast(monkeypatch):
    monkeypatch.setenv(_torchvision.PURE_OPS_ENV, "1")
    torch.manual_seed(0)
    features = torch.randn(1, 3, 100, 100)
    rois = torch.tensor([[0.0, 1450.7, 1300.2, 1499.3, 1590.9]])
    reference = roi_align(features, rois, (3, 3), 1 / 16, sampling_ratio=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = roi_align(features, rois, (3, 3), 1 / 16, sampling_ratio=2)
    assert torch.equal(under_autocast, reference)


def test_exemplar_crops_send_float32_boxes(monkeypatch):
    seen = []

    def recording_roi_align(images, rois, size, **kwargs):
        seen.append(rois)
        return images.new_zeros((rois.shape[0], images.shape[1], *size))

    monkeypatch.setattr(exemplars, "roi_align", recording_roi_align)
    images = torch.zeros(1, 3, 1504, 1504, dtype=torch.bfloat16)
    exemplars.crop_and_resize(images, torch.tensor([FAR_BOX]), (4, 2))
    assert seen[0].dtype == torch.float32 and seen[0][0, 3].item() == pytest.approx(1499.3, abs=1e-4)


def _reset_warning(monkeypatch, available: bool) -> None:
    monkeypatch.setattr(_torchvision, "_cached_ops", object() if available else None)
    monkeypatch.setattr(_torchvision, "_unavailable_reason", None if available else "torchvision is not installed")
    monkeypatch.setattr(_torchvision, "_warned_slow_fallback", False)
    monkeypatch.delenv(_torchvision.PURE_OPS_ENV, raising=False)


def test_warns_once_when_cuda_runs_the_pure_ops(monkeypatch):
    _reset_warning(monkeypatch, available=False)
    cuda = torch.device("cuda", 0)  # a device object; nothing runs on it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _torchvision.warn_if_slow_fallback(torch.device("cpu")) is False
        assert _torchvision.warn_if_slow_fallback(cuda) is True
        assert _torchvision.warn_if_slow_fallback(cuda) is False
    assert len(caught) == 1
    assert "personsearch[gpu]" in str(caught[0].message) and "not installed" in str(caught[0].message)


def test_no_warning_when_compiled_ops_load_or_pure_ops_are_asked_for(monkeypatch):
    _reset_warning(monkeypatch, available=True)
    assert _torchvision.warn_if_slow_fallback(torch.device("cuda", 0)) is False
    _reset_warning(monkeypatch, available=False)
    monkeypatch.setenv(_torchvision.PURE_OPS_ENV, "1")
    assert _torchvision.warn_if_slow_fallback(torch.device("cuda", 0)) is False


def test_chunk_budget_is_larger_on_cuda():
    assert _torchvision.chunk_budget(1000, torch.device("cpu")) == 1000
    assert _torchvision.chunk_budget(1000, torch.device("cuda", 0)) == 1000 * _torchvision.CUDA_BUDGET_FACTOR
