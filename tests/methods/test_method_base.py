"""Method registry, the one source of method parameters (``Params``) and their generic
validation: unknown key, wrong type, a value outside a Literal choice, a renamed parameter; the
base test-time extractor hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
import torch

from personsearch.errors import ConfigError
from personsearch.methods import base
from personsearch.methods.base import (Method, build_method, register_method,
                                       upgrade_saved_params, validate_params)
from personsearch.methods.context import MethodContext


class WithParams(Method):
    renamed_params = {"radius": "k1"}

    @dataclass(frozen=True)
    class Params:
        k1: int = 30
        eps: tuple[float, ...] = (0.68, 0.7, 0.72)
        reduction: Literal["mean", "sum"] = "mean"


class Extended(WithParams):
    @dataclass(frozen=True)
    class Params(WithParams.Params):
        crop: tuple[int, int] = (4, 2)


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_method("with_params", WithParams)
    register_method("extended", f"{__name__}:Extended")


def test_build_fills_params_from_the_dataclass_only():
    method = build_method("with_params", k1=20, eps=[0.5, 0.6])
    assert method.params == WithParams.Params(k1=20, eps=(0.5, 0.6))
    assert method.name == "with_params"
    assert build_method("with_params").params.k1 == 30
    extended = build_method("extended", crop=[8, 4], reduction="sum")  # lazy "module:Class"
    assert extended.params == Extended.Params(reduction="sum", crop=(8, 4))


def test_validation_names_key_value_and_choices():
    with pytest.raises(ConfigError, match=r"method\.params\.k2: unknown key"):
        build_method("with_params", k2=1)
    with pytest.raises(ConfigError, match=r"method\.params\.k1: expected an integer"):
        build_method("with_params", k1="many")
    with pytest.raises(ConfigError, match=r"method\.params\.reduction: expected one of mean, sum, "
                                          r"got 'max'"):
        build_method("with_params", reduction="max")
    with pytest.raises(ConfigError, match=r"method\.params\.crop\[1\]: expected an integer"):
        build_method("extended", crop=[8, "x"])


def test_renamed_parameter_names_the_new_one_and_saved_configs_are_upgraded():
    with pytest.raises(ConfigError, match=r"method\.params\.radius: renamed to k1"):
        build_method("with_params", radius=3)
    assert upgrade_saved_params("with_params", {"radius": 3, "eps": [0.1]}) == {"k1": 3, "eps": [0.1]}
    assert upgrade_saved_params("not_registered", {"radius": 3}) == {"radius": 3}
    assert validate_params(WithParams, {"k1": 3}).k1 == 3


def test_builtin_renames_of_margin():
    with pytest.raises(ConfigError, match=r"method\.params\.margin: renamed to quaduplet_margin"):
        build_method("cgps", margin=0.2)
    with pytest.raises(ConfigError, match=r"method\.params\.margin: renamed to quaduplet_margin"):
        build_method("dicl", margin=0.2)
    with pytest.raises(ConfigError, match=r"method\.params\.margin: renamed to scale_margin"):
        build_method("ssl", margin=0.2)
    assert build_method("ssl", scale_margin=0.2, quaduplet_margin=0.4).params.scale_margin == 0.2
    assert upgrade_saved_params("cgps", {"margin": 0.2}) == {"quaduplet_margin": 0.2}


def test_unknown_and_unimplemented_methods():
    with pytest.raises(ConfigError, match=r"method\.name: unknown method 'nope'.*seqnet"):
        build_method("nope")
    register_method("missing", "personsearch.methods.does_not_exist:Missing")
    with pytest.raises(ConfigError, match="does_not_exist does not exist"):
        build_method("missing")


def test_base_defaults_and_context():
    method = Method()
    with pytest.raises(TypeError):
        Method(anything=1)  # the base method has no parameter
    assert not method.dist.enabled  # single process before setup
    context = MethodContext([], torch.device("cpu"), progress=False)
    method.setup(None, context)
    assert method.context is context and not context.show_progress
    assert method.on_epoch_start(None, 0) == {}
    assert method.state_dict() == {}
    method.load_state_dict({})
    with pytest.raises(ValueError, match="no state"):
        method.load_state_dict({"memory": 1})
    with pytest.raises(NotImplementedError):
        method.training_step(None, {}, 0)


def test_base_test_feature_extractors_are_the_models_own():
    assert Method.test_feature_extractors(Method.Params(), "auto") == {}
    assert Method.test_feature_extractors(Method.Params(), "off") == {}
    with pytest.raises(ConfigError, match="--fusion on: method WithParams has no test-time"):
        WithParams.test_feature_extractors(WithParams.Params(), "on")
