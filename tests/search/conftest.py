"""Fixtures for the search tests (helpers live in search_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_fixtures import SCENES, ColourEmbedder, draw_scene


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name, persons in SCENES.items():
        draw_scene(root / name, persons)
    (root / "notes.txt").write_text("not an image, ignored by extension")
    return root


@pytest.fixture
def embedder() -> ColourEmbedder:
    return ColourEmbedder()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real small PersonSearchModel with random (seeded) weights in the checkpoint layout
    engine.checkpoint.load_model reads; detections thresholded at 0 so it returns boxes."""
    import torch

    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.models import build_model

    torch.manual_seed(0)
    kwargs = {"backbone": "small", "box_score_thresh": 0.0, "rpn_post_nms_top_n_test": 30,
              "rpn_pre_nms_top_n_test": 200, "detections_per_image": 5, "embedding_dim": 32}
    model = build_model(**kwargs)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"format_version": 1, "model_kwargs": kwargs, "model": model.state_dict(),
                           "method": "seqnet", "config": {"eval": {"min_size": 64, "max_size": 96}}})
    return path
