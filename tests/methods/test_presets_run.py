"""Every preset in configs/ loads and its method trains a few iterations on CPU: the preset's
method section (the paper settings: scales, thresholds, memory, pseudo labels, crop size, OIC)
is kept as it is; only the data, the backbone and the budget are shrunk to a tiny synthetic
dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personsearch.cli.main import main

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SHRINK = {
    "data.format": "prw", "data.min_size": 180, "data.max_size": 320, "data.multi_scale": [],
    "data.batch_size": 2, "data.workers": 0,
    "model.backbone": "small", "model.backbone_weights": None, "model.frozen_stem": False,
    "model.frozen_bn": False, "model.rpn_pre_nms_top_n_train": 200,
    "model.rpn_post_nms_top_n_train": 64, "model.roi_batch_size_per_image": 16,
    "solver.epochs": 1, "solver.warmup_iters": 1, "solver.warmup_epochs": None, "solver.lr_steps": [5],
    "train.progress": False, "train.log_every": 1, "train.checkpoint_every_iters": 0,
    "eval.min_size": 180, "eval.max_size": 320,
}


@pytest.fixture(scope="module")
def micro_dataset(tmp_path_factory) -> Path:
    """8 frames (a few training images, so each preset runs 1-2 iterations)."""
    from personsearch.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("micro_synth")
    generate_dataset(root, fmt="prw", frames=8, seed=4, width=320, height=180, workers=1)
    return root


def test_every_preset_is_covered():
    names = {path.stem for path in CONFIGS}
    for method in ("seqnet", "cgps", "ssl", "dicl"):
        assert any(name.startswith(method) for name in names), method


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_preset_trains_a_few_iterations(config, micro_dataset, tmp_path):
    overrides = {**SHRINK, "data.root": str(micro_dataset)}
    args = ["train", str(config), "--out", str(tmp_path / "run")]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert main(args) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    iterations = [r for r in records if r.get("type") == "iter"]
    assert iterations and all(r["total"] == r["total"] for r in iterations)  # logged, not NaN
