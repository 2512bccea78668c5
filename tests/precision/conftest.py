"""A tiny synthetic PRW-format dataset (12 frames, 160x96), a small seeded model checkpoint whose
config names that dataset, and its INT8 checkpoint (personsearch quantize), shared by the
precision tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

MODEL_KWARGS = {"backbone": "small", "box_score_thresh": 0.0, "rpn_post_nms_top_n_test": 20,
                "rpn_pre_nms_top_n_test": 100, "detections_per_image": 4, "embedding_dim": 32}
EVAL_SIZES = {"min_size": 96, "max_size": 160}


@pytest.fixture(scope="package")
def synth_root(tmp_path_factory) -> Path:
    from personsearch.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("precision_synth") / "prw"
    generate_dataset(root, fmt="prw", frames=12, seed=5, width=160, height=96, workers=1)
    return root


@pytest.fixture(scope="package")
def float_checkpoint(tmp_path_factory, synth_root) -> Path:
    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.models import build_model

    torch.manual_seed(0)
    model = build_model(**MODEL_KWARGS)
    path = tmp_path_factory.mktemp("precision_ckpt") / "fp32.pt"
    save_checkpoint(path, {"format_version": 1, "model_kwargs": MODEL_KWARGS, "model": model.state_dict(),
                           "method": "seqnet", "epoch": 0, "optimizer": {"note": "dropped by quantize"},
                           "config": {"data": {"format": "prw", "root": str(synth_root)}, "eval": EVAL_SIZES}})
    return path


@pytest.fixture(scope="package")
def int8_checkpoint(float_checkpoint) -> tuple[Path, dict]:
    """(path, quantize_checkpoint's summary)."""
    from personsearch.precision.checkpoint import quantize_checkpoint

    out = float_checkpoint.parent / "int8.pt"
    summary = quantize_checkpoint(float_checkpoint, out, images=3, check_images=2, rois_per_call=8, progress=False)
    return out, summary


@pytest.fixture
def cache_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PERSONSEARCH_CACHE_DIR", str(folder))
    return folder
