"""Checkpoints: atomic writes survive a crash, safe loading, RNG capture, model rebuild."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from personsearch import atomic
from personsearch.engine import checkpoint as ckpt
from personsearch.errors import CheckpointError


def state(value: float) -> dict:
    return {
        "model": {"w": torch.full((3,), value), "n": torch.tensor(2)},
        "memory": np.arange(4, dtype=np.float32) * value,  # numpy -> tensor
        "epoch": 1,
        "name": "x",
        "items": [1.5, None, {"a": np.int64(3)}],
    }


def test_roundtrip_with_weights_only(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "c" / "last.pt", state(2.0))
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 2.0))
    assert torch.equal(loaded["memory"], torch.arange(4, dtype=torch.float32) * 2)
    assert loaded["items"] == [1.5, None, {"a": 3}]
    assert ckpt.load_checkpoint(path)["name"] == "x"


def test_crash_during_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, state(1.0))
    real_save = torch.save

    def crashing_save(obj, handle, *args, **kwargs):
        handle.write(b"PARTIAL")  # half-written file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, state(9.0))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.full((3,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)  # the rename of atomic_open
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, state(5.0))
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.full((3,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_unstorable_objects_are_rejected(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\.bad.*object"):
        ckpt.save_checkpoint(tmp_path / "x.pt", {"bad": object()})


def test_corrupt_or_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint file not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt: cannot load"):
        ckpt.load_checkpoint(bad)


def test_rng_state_roundtrip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(1)  # has_gauss set for numpy
    path = ckpt.save_checkpoint(tmp_path / "rng.pt", {"rng": ckpt.capture_rng_state()})
    expected = (random.random(), np.random.normal(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng_state(ckpt.load_checkpoint(path)["rng"])
    got = (random.random(), np.random.normal(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_fingerprint_is_stable_and_sensitive():
    weights = {"a": torch.arange(4.0), "b": torch.ones(2, dtype=torch.bfloat16)}
    kwargs = {"backbone": "small", "anchor_sizes": (32, 64)}
    first = ckpt.fingerprint(kwargs, weights)
    assert first == ckpt.fingerprint({"anchor_sizes": [32, 64], "backbone": "small"},
                                     {k: v.clone() for k, v in weights.items()})
    changed = dict(weights, a=torch.tensor([0.0, 1.0, 2.0, 3.5]))
    assert ckpt.fingerprint(kwargs, changed) != first
    assert ckpt.fingerprint({**kwargs, "backbone": "resnet18"}, weights) != first


def test_load_model_rebuilds_the_model(tmp_path):
    from personsearch.models import build_model

    kwargs = {"backbone": "small", "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10}
    torch.manual_seed(0)
    model = build_model(**kwargs)
    path = ckpt.save_checkpoint(tmp_path / "m.pt", {
        "model": model.state_dict(), "model_kwargs": kwargs, "method": "seqnet",
        "epoch": 3, "iteration": 30, "config": {},
    })
    rebuilt, info = ckpt.load_model(path)
    assert not rebuilt.training
    for name, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value), name
    assert info["fingerprint"] == ckpt.fingerprint(kwargs, model.state_dict())
    assert info["epoch"] == 3 and info["method"] == "seqnet"
    bad = ckpt.save_checkpoint(tmp_path / "bad.pt", {"model": {}, "model_kwargs": {"nope": 1}})
    with pytest.raises(CheckpointError, match="bad.pt: model_kwargs"):
        ckpt.load_model(bad)
