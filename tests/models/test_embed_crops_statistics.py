"""The crop/exemplar branch must not touch BatchNorm running statistics: crops have other
statistics than scenes, and the test-time main branch depends on the scene statistics (without
this, SSL's exemplar branch collapsed the detector on the synthetic benchmark)."""

import torch
from torch import nn

from personsearch.models import build_model


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for t in (m.running_mean, m.running_var)]


def test_embed_crops_in_training_keeps_running_statistics_but_trains():
    torch.manual_seed(0)
    model = build_model(backbone="small").train()
    before = _running_stats(model)
    crops = torch.randn(3, 3, 64, 32) * 3 + 1
    embeddings = model.embed_crops(crops)
    after = _running_stats(model)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    embeddings.sum().backward()  # still trains the shared weights
    assert any(p.grad is not None for p in model.backbone.parameters())
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert 0.0 not in momenta  # restored afterwards


def test_training_forward_still_updates_running_statistics():
    torch.manual_seed(0)
    model = build_model(backbone="small").train()
    before = _running_stats(model)
    images = torch.randn(1, 3, 96, 128)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 90.0]]), "slots": torch.tensor([0])}]
    model(images, [(96, 128)], targets)
    after = _running_stats(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
