"""evaluation/inference.py: ``method_feature_extractors`` asks the checkpoint's method (the
``test_feature_extractors`` hook) how to extract test features, from the saved parameters:
DICL fuses scene and crop features when trained so, the others use the model's own; an old
parameter name in a saved config still loads; ``--fusion on`` for a method without fusion is
a clear error."""

from __future__ import annotations

import pytest

from personsearch.errors import ConfigError
from personsearch.evaluation.inference import method_feature_extractors


def _info(method: str, params: dict | None = None) -> dict:
    config = {"method": {"name": method, "params": params}} if params is not None else {}
    return {"method": method, "config": config}


def test_dicl_fuses_as_trained_and_as_asked():
    fused = method_feature_extractors(_info("dicl", {"crop_size": [32, 16]}))
    assert set(fused) == {"gallery_extractor", "query_extractor"}
    assert method_feature_extractors(_info("dicl", {"inference_fusion": False})) == {}
    assert set(method_feature_extractors(_info("dicl", {"inference_fusion": False}), "on")) == {
        "gallery_extractor", "query_extractor"}
    assert method_feature_extractors(_info("dicl", {}), "off") == {}


def test_other_methods_use_the_models_own_features():
    assert method_feature_extractors(_info("cgps", {"margin": 0.3})) == {}  # old name upgraded
    assert method_feature_extractors(_info("ssl")) == {}
    assert method_feature_extractors({"method": "untrained", "config": {}}) == {}
    with pytest.raises(ConfigError, match="--fusion on: method cgps has no test-time"):
        method_feature_extractors(_info("cgps", {}), "on")
    with pytest.raises(ConfigError, match=r"method\.params\.crop_size: expected a list"):
        method_feature_extractors(_info("dicl", {"crop_size": 32}))
    with pytest.raises(ValueError, match="auto, on or off"):
        method_feature_extractors(_info("dicl", {}), "maybe")
