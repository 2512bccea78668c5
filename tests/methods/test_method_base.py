"""Method registry and parameter validation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from personsearch.errors import ConfigError
from personsearch.methods import base
from personsearch.methods.base import Method, build_method, register_method


@dataclass(frozen=True)
class _Params:
    k1: int = 30
    eps: tuple[float, ...] = (0.68, 0.7, 0.72)


class WithParams(Method):
    Params = _Params

    def __init__(self, k1: int, eps: tuple[float, ...]) -> None:
        self.k1, self.eps = k1, eps


class WithSignature(Method):
    def __init__(self, momentum: float = 0.2) -> None:
        self.momentum = momentum


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    register_method("with_params", WithParams)
    register_method("with_signature", f"{__name__}:WithSignature")


def test_build_with_params_dataclass():
    method = build_method("with_params", k1=20, eps=[0.5, 0.6])
    assert (method.k1, method.eps, method.name) == (20, (0.5, 0.6), "with_params")
    assert build_method("with_params").k1 == 30
    with pytest.raises(ConfigError, match=r"method\.params\.k2: unknown key"):
        build_method("with_params", k2=1)
    with pytest.raises(ConfigError, match=r"method\.params\.k1: expected an integer"):
        build_method("with_params", k1="many")


def test_build_with_signature_lazy_import():
    method = build_method("with_signature", momentum=0.5)
    assert isinstance(method, WithSignature) and method.momentum == 0.5
    with pytest.raises(ConfigError, match=r"method\.params\.tau: unknown key"):
        build_method("with_signature", tau=0.05)


def test_unknown_and_unimplemented_methods():
    with pytest.raises(ConfigError, match=r"method\.name: unknown method 'nope'.*seqnet"):
        build_method("nope")
    register_method("missing", "personsearch.methods.does_not_exist:Missing")
    with pytest.raises(ConfigError, match="does_not_exist does not exist"):
        build_method("missing")


def test_base_defaults():
    method = Method()
    assert method.on_epoch_start(None, 0) == {}
    assert method.state_dict() == {}
    method.load_state_dict({})
    with pytest.raises(NotImplementedError):
        method.training_step(None, {}, 0)
