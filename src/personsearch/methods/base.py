"""The Method contract (docs/architecture.md, "Method contract") and the method registry.

A method is what makes SeqNet, CGPS, SSL and DICL differ: extra branches, losses, memory banks
and pseudo labels. The trainer drives it:

1. ``setup(model, train_records, device)`` once before training (build and initialise
   memories), or ``restore(...)`` when resuming;
2. ``on_epoch_start(model, epoch) -> metrics`` at the start of each epoch (pseudo labels);
3. per batch: ``training_step(model, batch, epoch) -> StepOutput``; the trainer multiplies each
   loss by ``loss_weights.get(name, 1.0)``, sums, back-propagates, clips and steps the
   optimizer; then it gathers ``StepOutput.pending`` across processes and calls
   ``after_step(pending)`` under ``torch.no_grad()`` — the one place memories change;
4. ``state_dict()`` / ``load_state_dict(state)`` for checkpoints (tensors, numbers, strings,
   lists, dicts only: numpy arrays must be converted to tensors).

Multi-process training: the trainer sets ``method.dist`` (a
:class:`~personsearch.engine.distributed.DistContext`; the single-process one by default).
``pending`` must be a dict of tensors (nested dicts allowed) whose leading dimension is the
batch of this process: the trainer concatenates them over ranks along dim 0, so every rank's
``after_step`` sees the same update and the banks stay identical. Pseudo labels: compute them
on ``self.dist.is_main`` and share them with ``self.dist.broadcast_tensor(labels)`` (in place,
same shape/dtype on every rank) or ``self.dist.broadcast_object(obj)``.

``model`` in ``training_step`` is the module to *call* for the training forward (it may be a
DistributedDataParallel wrapper); use ``personsearch.engine.distributed.unwrap_model(model)``
to reach other methods such as ``embed_crops``.

Registry: ``build_method(name, **params)``. Built-in names map to "module:Class" strings and
are imported lazily; a method module may also call ``register_method(name, target)``. If the
class defines a dataclass ``Params``, the keyword arguments are validated against it (unknown
keys / wrong types are ConfigError naming ``method.params.<key>``); otherwise against the
constructor's signature.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from personsearch.engine.distributed import LOCAL, DistContext
from personsearch.errors import ConfigError


@dataclass
class StepOutput:
    """What ``training_step`` returns.

    losses   dict[str, Tensor] scalar losses, unweighted (the trainer applies loss_weights)
    pending  dict[str, Tensor] memory update for ``after_step``; every tensor [B_local, ...]
    metrics  dict[str, float] optional per-step numbers to log (not losses)
    """

    losses: dict[str, torch.Tensor]
    pending: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class Method:
    """Base class; subclasses implement ``training_step`` and whatever else they need."""

    name: str = ""
    loss_weights: dict[str, float] = {}
    dist: DistContext = LOCAL

    def setup(self, model: nn.Module, train_records: Sequence[Any], device: torch.device) -> None:
        """Build / initialise memories. Default: nothing."""

    def restore(
        self,
        model: nn.Module,
        train_records: Sequence[Any],
        device: torch.device,
        state: dict,
    ) -> None:
        """Prepare for resuming from ``state`` (a ``state_dict()`` result). Default: ``setup``
        then ``load_state_dict``; override to skip expensive initialisation whose result the
        state overwrites anyway."""
        self.setup(model, train_records, device)
        self.load_state_dict(state)

    def on_epoch_start(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Refresh pseudo labels etc.; return metrics to log. Default: nothing."""
        return {}

    def training_step(self, model: nn.Module, batch: dict, epoch: int) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} does not implement training_step")

    def after_step(self, pending: dict[str, Any]) -> None:
        """Apply the (gathered) pending update. Default: nothing."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state but got keys {sorted(state)}")


# ------------------------------------------------------------------------------- registry

# name -> "module:Class" (imported lazily) or the class itself.
_REGISTRY: dict[str, Any] = {
    "seqnet": "personsearch.methods.seqnet:SeqNetMethod",
    "cgps": "personsearch.methods.cgps:CGPSMethod",
    "ssl": "personsearch.methods.ssl:SSLMethod",
    "dicl": "personsearch.methods.dicl:DICLMethod",
}


def register_method(name: str, target: Any) -> None:
    """Map ``name`` to a Method class or a "module:Class" string (later registrations win)."""
    _REGISTRY[name] = target


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def method_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ConfigError(f"method.name: unknown method {name!r} (known: {', '.join(method_names())})")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            raise ConfigError(
                f"method.name: method {name!r} is registered as {target} but {module_name} "
                "does not exist (not implemented yet?)"
            ) from None
        try:
            target = getattr(module, class_name)
        except AttributeError:
            raise ConfigError(
                f"method.name: {module_name} has no class {class_name} (registered for {name!r})"
            ) from None
        _REGISTRY[name] = target
    return target


def validate_params(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against ``cls.Params`` (a dataclass) or ``cls.__init__``; return the
    keyword arguments to call ``cls`` with."""
    from personsearch.config import dataclass_from_dict

    params_cls = getattr(cls, "Params", None)
    if params_cls is not None and dataclasses.is_dataclass(params_cls):
        validated = dataclass_from_dict(params_cls, params, "method.params")
        return {f.name: getattr(validated, f.name) for f in dataclasses.fields(validated)}
    signature = inspect.signature(cls.__init__)
    accepted = [
        p.name
        for p in list(signature.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigError(
                f"method.params.{unknown[0]}: unknown key for method {cls.__name__} "
                f"(known: {', '.join(accepted)})"
            )
    return dict(params)


def build_method(name: str, **params: Any) -> Method:
    """Instantiate the method registered as ``name`` with validated keyword arguments."""
    cls = method_class(name)
    method = cls(**validate_params(cls, params))
    method.name = name
    return method
