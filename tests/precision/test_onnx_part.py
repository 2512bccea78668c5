"""OnnxPart (precision.onnx_part): an exported float graph computes what the PyTorch module does,
for any batch (empty included) and spatial size, and survives copy.deepcopy."""

from __future__ import annotations

import copy

import torch
from torch import nn

from personsearch.precision.onnx_part import OnnxPart, export_part


def _block() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1, stride=2)).eval()


def test_float_graph_matches_module_at_other_sizes():
    block = _block()
    part = OnnxPart("block", export_part(block, torch.randn(1, 3, 8, 8), ["out"]), {"stride": 2})
    assert part.stride == 2
    for shape in [(1, 3, 8, 8), (3, 3, 10, 6), (0, 3, 8, 8)]:
        inputs = torch.randn(*shape)
        with torch.no_grad():
            expected = block(inputs)
        got = part(inputs)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5)


def test_two_outputs_come_back_as_a_tuple():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 1, 1), nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return self.a(x), self.b(x)

    torch.manual_seed(1)
    heads = TwoHeads().eval()
    part = OnnxPart("heads", export_part(heads, torch.randn(1, 2, 4, 4), ["a", "b"]))
    inputs = torch.randn(1, 2, 5, 7)
    first, second = part(inputs)
    assert torch.allclose(first, heads.a(inputs), atol=1e-5) and second.shape == (1, 3, 5, 7)


def test_deepcopy_starts_its_own_session():
    part = OnnxPart("block", export_part(_block(), torch.randn(1, 3, 8, 8), ["out"]))
    inputs = torch.randn(2, 3, 8, 8)
    first = part(inputs)
    clone = copy.deepcopy(part)
    assert clone._session is None and part._session is not None
    assert torch.equal(clone(inputs), first)
