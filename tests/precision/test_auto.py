"""``--precision auto`` (precision.auto): picks a path, caches the choice per machine and model,
and falls back to float32 when a candidate fails its accuracy check (never silently)."""

from __future__ import annotations

import json

import torch

from personsearch.engine.checkpoint import load_model
from personsearch.precision import auto
from personsearch.precision.check import FIXED_BOXES
from personsearch.precision.load import load_for_inference
from personsearch.precision.paths import prepare_path


def _choose(checkpoint, **kwargs):
    model, info = load_model(checkpoint)
    return auto.choose_path(model, info, min_size=96, max_size=160, test_proposals=20, **kwargs)


def test_auto_picks_a_measured_path_and_caches_it(int8_checkpoint, cache_folder, monkeypatch):
    messages = []
    model, info, path = load_for_inference(int8_checkpoint[0], "auto", log=messages.append)
    files = list((cache_folder / "precision").glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["chosen"] == path.name
    assert set(record["candidates"]) >= {"fp32", "int8"}
    assert record["machine"]["threads"] == torch.get_num_threads() and record["machine"]["cpu_flags"]
    assert record["model"]["fingerprint"] == info["fingerprint"] and record["model"]["int8_graphs"]
    int8 = record["candidates"]["int8"]
    assert int8["boxes_compared"] >= 2 * len(FIXED_BOXES)  # two check images, each with the fixed boxes
    assert int8["passed"] and int8["cosine_mean"] > 0.98
    fastest = min(record["candidates"], key=lambda name: record["candidates"][name]["seconds_per_image"])
    assert path.name == fastest
    assert any(m.startswith(f"precision auto: chose {path.name}") for m in messages)

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a cached choice must not be measured again")

    monkeypatch.setattr(auto, "_measure", must_not_measure)
    again = []
    _, _, cached_path = load_for_inference(int8_checkpoint[0], "auto", log=again.append)
    assert cached_path.name == path.name and "cached in" in again[0]


def test_cache_is_per_machine(int8_checkpoint, cache_folder, monkeypatch):
    first = _choose(int8_checkpoint[0])
    other_machine = {**auto.machine_record(), "cpu": "another CPU"}
    monkeypatch.setattr(auto, "machine_record", lambda: other_machine)
    second = _choose(int8_checkpoint[0])
    assert not first.from_cache and not second.from_cache
    assert len(list((cache_folder / "precision").glob("*.json"))) == 2


def test_failing_candidate_falls_back_to_fp32_and_says_so(int8_checkpoint, cache_folder):
    """A candidate whose embeddings are wrong (the output rows of the embedding projections
    rolled by one: the embedding dimensions permuted) is measured, fails the cosine check, is
    reported, and float32 is chosen."""
    _, info = load_model(int8_checkpoint[0])

    def broken(model):
        path = prepare_path(model, "fp32", info)
        with torch.no_grad():
            for layer in model.roi_heads.embedding.modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.copy_(layer.weight.roll(1, dims=0))
                    layer.bias.copy_(layer.bias.roll(1, dims=0))
        return path

    builders = {"fp32": lambda model: prepare_path(model, "fp32", info), "broken": broken}
    choice = _choose(int8_checkpoint[0], builders=builders)
    assert choice.name == "fp32"
    assert not choice.record["candidates"]["broken"]["passed"]
    assert any("cosine" in failure for failure in choice.record["candidates"]["broken"]["failures"])
    assert any("broken FAILED its accuracy check" in message for message in choice.messages)


def test_bf16_is_a_candidate_only_with_native_bf16():
    assert auto.native_bf16(["avx2", "avx512_bf16"]) and auto.native_bf16(["amx_bf16"])
    assert not auto.native_bf16(["avx2", "avx512f", "avx512_vnni"])


def test_float_checkpoint_without_faster_candidates(float_checkpoint, cache_folder, monkeypatch):
    without_bf16 = {**auto.machine_record(), "cpu_flags": ["avx2", "fma"]}
    monkeypatch.setattr(auto, "machine_record", lambda: without_bf16)
    choice = _choose(float_checkpoint)
    assert choice.name == "fp32"
    assert set(choice.record["skipped"]) == {"bf16", "int8"}
    assert "personsearch quantize" in choice.record["skipped"]["int8"]
