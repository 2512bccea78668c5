"""INT8 checkpoints (precision.checkpoint / precision.int8): calibration on the dataset's
training images, what the file holds, loading through the same calls as any checkpoint, and
the INT8 model ranking the same top gallery hit as float32 on the synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personsearch.data.splits import load_split
from personsearch.data.transforms import load_image
from personsearch.engine.checkpoint import load_checkpoint, load_model
from personsearch.errors import CheckpointError
from personsearch.precision.load import load_for_inference
from personsearch.precision.onnx_part import OnnxPart
from personsearch.search.build import ModelEmbedder


def test_int8_checkpoint_contents(int8_checkpoint, float_checkpoint, synth_root):
    path, summary = int8_checkpoint
    state = load_checkpoint(path)
    assert "optimizer" not in state  # training state dropped
    record = state["int8"]
    assert sorted(record["graphs"]) == ["backbone", "box_head.res5", "reid_head.res5", "rpn_head"]
    assert all(graph.dtype == torch.uint8 and graph.numel() > 1000 for graph in record["graphs"].values())
    train_names = [r.image_name for r in load_split("prw", synth_root, "train", read_sizes=False)]
    calibration = record["calibration"]
    assert len(calibration["images"]) == 3 and len(calibration["check_images"]) == 2
    assert set(calibration["images"]) | set(calibration["check_images"]) <= set(train_names)
    assert not set(calibration["images"]) & set(calibration["check_images"])  # held out
    first_check = next(r for r in load_split("prw", synth_root, "train") if r.image_name == calibration["check_images"][0])
    assert np.array_equal(record["check_images"][0].numpy(), load_image(first_check.image_path))
    assert summary["calibration"] == calibration
    # same weights, so the same fingerprint: an index built at one precision is searched at any
    assert load_model(path)[1]["fingerprint"] == load_model(float_checkpoint)[1]["fingerprint"]


def test_quantizing_an_int8_checkpoint_is_refused(int8_checkpoint, tmp_path):
    from personsearch.precision.checkpoint import quantize_checkpoint

    with pytest.raises(CheckpointError, match="already an INT8 checkpoint"):
        quantize_checkpoint(int8_checkpoint[0], tmp_path / "again.pt", images=1, check_images=1, progress=False)


def test_int8_path_runs_onnx_parts(int8_checkpoint):
    model, _, path = load_for_inference(int8_checkpoint[0], "int8")
    assert path.name == "int8" and not path.bf16
    assert isinstance(model.backbone, OnnxPart) and isinstance(model.rpn.head, OnnxPart)
    assert isinstance(model.roi_heads.box_head.res5, OnnxPart) and isinstance(model.roi_heads.reid_head.res5, OnnxPart)
    assert model.backbone.out_channels == load_model(int8_checkpoint[0])[0].backbone.out_channels


def test_int8_on_a_float_checkpoint_names_quantize(float_checkpoint):
    with pytest.raises(CheckpointError, match="personsearch quantize"):
        load_for_inference(float_checkpoint, "int8")


def test_int8_ranks_the_same_top_hit_as_fp32(int8_checkpoint, synth_root):
    """Every query GT box against every gallery GT box (synthetic test frames): the INT8 model's
    top hit is float32's, and its embeddings stay close (cosine > 0.95)."""
    gallery = load_split("prw", synth_root, "gallery")
    queries = load_split("prw", synth_root, "query")
    embedders = {}
    for precision in ("fp32", "int8"):
        model, info, path = load_for_inference(int8_checkpoint[0], precision)
        embedders[precision] = ModelEmbedder(model, info["fingerprint"], 96, 160, path=path)
    features = {}
    for precision, embedder in embedders.items():
        gallery_feats = np.concatenate([embedder.embed(load_image(r.image_path), r.boxes) for r in gallery])
        query_feats = np.concatenate([embedder.embed(load_image(q.image_path), q.boxes) for q in queries])
        features[precision] = (gallery_feats, query_feats)
    assert features["fp32"][0].shape[0] == sum(r.num_boxes for r in gallery) >= 5
    for (gallery_fp32, query_fp32), (gallery_int8, query_int8) in [(features["fp32"], features["int8"])]:
        top_fp32 = (query_fp32 @ gallery_fp32.T).argmax(axis=1)
        top_int8 = (query_int8 @ gallery_int8.T).argmax(axis=1)
        assert top_int8.tolist() == top_fp32.tolist()
        assert (gallery_fp32 * gallery_int8).sum(axis=1).min() > 0.95
