"""A tiny synthetic PRW-format dataset (320x180, a few dozen frames) shared by the method tests,
and a tiny-model config writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from personsearch.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("tiny_synth")
    generate_dataset(root, fmt="prw", frames=24, seed=3, width=320, height=180, workers=1)
    return root


TINY_MODEL = {
    "backbone": "small", "frozen_stem": False, "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 64, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 32,
    "roi_batch_size_per_image": 16, "roi_bg_iou_thresh": 0.1, "box_score_thresh": 0.0,
    "detections_per_image": 20,
}


@pytest.fixture
def tiny_model() -> dict:
    """The tiny detector's ``model:`` section (a copy: tests may change it)."""
    return dict(TINY_MODEL)


@pytest.fixture
def write_config():
    """The config writer below, as a fixture (test folders are not packages)."""
    return _write_config


def _write_config(path: Path, root: Path, method: str, params: dict | None = None,
                 masks: bool = False, epochs: int = 1, out_dir: Path | None = None) -> Path:
    config = {
        "data": {"format": "prw", "root": str(root), "min_size": 180, "max_size": 320,
                 "batch_size": 2, "workers": 0, "masks": masks},
        "model": TINY_MODEL,
        "method": {"name": method, "params": params or {}},
        "solver": {"lr": 0.005, "warmup_iters": 2, "epochs": epochs, "lr_steps": [5]},
        "train": {"out_dir": str(out_dir or path.parent / f"run_{method}"), "log_every": 1,
                  "progress": False},
        "eval": {"min_size": 180, "max_size": 320},
    }
    path.write_text(yaml.safe_dump(config))
    return path
