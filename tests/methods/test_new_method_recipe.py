"""docs/architecture.md, "Adding a weakly supervised method", followed literally: a loss
function, a method file (a CGPSMethod subclass with its own ``Params``), a preset whose
``base:`` is a shipped preset, and nothing else; the method trains through ``personsearch
train``, its loss is weighted by its parameter, its parameters are validated and the
checkpoint evaluates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import torch
import yaml
from torch import Tensor, nn

from personsearch.cli.main import main
from personsearch.config import PRESETS_DIR
from personsearch.engine.checkpoint import load_checkpoint
from personsearch.errors import ConfigError
from personsearch.methods import base
from personsearch.methods.base import build_method, register_method
from personsearch.methods.cgps import CGPSMethod


def spread_loss(feats: Tensor, reduction: str) -> dict[str, Tensor]:
    """The new method's loss file, in one function: how far the RoI embeddings [R, D] sit from
    their mean (mean or max over RoIs)."""
    distances = (feats - feats.mean(dim=0, keepdim=True)).norm(dim=1)
    value = distances.mean() if reduction == "mean" else distances.max()
    return {"loss_spread": value}


class SpreadMethod(CGPSMethod):
    """CGPS plus a loss that pulls the batch's RoI embeddings together."""

    name = "spread"

    @dataclass(frozen=True)
    class Params(CGPSMethod.Params):
        spread_weight: float = 0.5
        spread_reduction: Literal["mean", "max"] = "mean"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.loss_weights["loss_spread"] = self.params.spread_weight

    def reid_features(self, model: nn.Module, batch: dict, out: Any) -> tuple[Tensor, dict]:
        return out.roi_embeddings, spread_loss(out.roi_embeddings, self.params.spread_reduction)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_method("spread", SpreadMethod)


def test_spread_loss_by_hand():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])  # mean (2, 0): distances 2, 0, 2
    assert spread_loss(feats, "mean")["loss_spread"].item() == pytest.approx(4 / 3)
    assert spread_loss(feats, "max")["loss_spread"].item() == pytest.approx(2.0)


def test_a_new_method_needs_only_its_file_its_loss_and_a_preset(registered, tiny_dataset, tiny_model,
                                                               tmp_path):
    with pytest.raises(ConfigError, match=r"method\.params\.spread_reduction: expected one of "
                                          r"mean, max, got 'sum'"):
        build_method("spread", spread_reduction="sum")
    preset = tmp_path / "spread_synthetic.yaml"
    preset.write_text(yaml.safe_dump({
        "base": str(PRESETS_DIR / "cgps_synthetic.yaml"),
        "data": {"root": str(tiny_dataset), "min_size": 180, "max_size": 320, "batch_size": 2,
                 "workers": 0, "multi_scale": []},
        "model": tiny_model,
        "method": {"name": "spread", "params": {"spread_weight": 0.25, "min_samples": 2}},
        "solver": {"epochs": 1, "warmup_iters": 2, "iters_per_epoch": 3},
        "train": {"out_dir": str(tmp_path / "run"), "log_every": 1, "progress": False,
                  "eval_every_epochs": 0},
        "eval": {"min_size": 180, "max_size": 320},
    }))
    assert main(["train", str(preset)]) == 0
    iters = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("type") == "iter"]
    assert len(iters) == 3
    for record in iters:
        assert {"loss_spread", "loss_cluster", "loss_quaduplet"} <= set(record)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["method"] == "spread"
    assert state["config"]["method"]["params"] == {"spread_weight": 0.25, "min_samples": 2}
    assert main(["eval", str(tmp_path / "run" / "checkpoints" / "last.pt"), "--dataset", "prw",
                 "--root", str(tiny_dataset), "--no-progress"]) == 0
