"""The Method contract (docs/architecture.md, "Method contract") and the method registry.

A method is what makes SeqNet, CGPS, SSL and DICL differ: extra branches, losses, memory banks
and pseudo labels. The trainer drives it:

1. ``setup(model, context)`` once before training (build and initialise memories), or
   ``restore(model, context, state)`` when resuming; ``context`` is a
   :class:`~personsearch.methods.context.MethodContext`: the training records, the device, the
   process group, the memory-extraction resize, the person-mask folder and (supervised methods
   only) the true identities — everything the method needs from the run, handed over
   explicitly;
2. ``on_epoch_start(model, epoch) -> metrics`` at the start of each epoch (pseudo labels);
3. per batch: ``training_step(model, batch, epoch) -> StepOutput``; the trainer multiplies each
   loss by ``loss_weights.get(name, 1.0)``, sums, back-propagates, clips and steps the
   optimizer; then it gathers ``StepOutput.pending`` across processes and calls
   ``after_step(pending)`` under ``torch.no_grad()`` — the one place memories change;
4. ``state_dict()`` / ``load_state_dict(state)`` for checkpoints (tensors, numbers, strings,
   lists, dicts only: numpy arrays must be converted to tensors);
5. at test time, ``test_feature_extractors(params, fusion)`` (a class method: only the
   checkpoint's saved parameters exist then) says how features are extracted; the default is
   the model's own ``detect`` / ``embed_boxes``.

Multi-process training: ``self.dist`` is the context's
:class:`~personsearch.comm.DistContext` (the single-process one before ``setup``).
``pending`` must be a dict of tensors (nested dicts allowed) whose leading dimension is the
batch of this process: the trainer concatenates them over ranks along dim 0, so every rank's
``after_step`` sees the same update and the banks stay identical. Pseudo labels: compute them
on ``self.dist.is_main`` and share them with ``self.dist.broadcast_tensor(labels)`` (in place,
same shape/dtype on every rank) or ``self.dist.broadcast_object(obj)``.

``model`` in ``training_step`` is the module to *call* for the training forward (it may be a
DistributedDataParallel wrapper); use ``personsearch.comm.unwrap_model(model)`` to reach other
methods such as ``embed_crops``.

Parameters: each method declares them once, as its frozen dataclass ``Params`` (inherit the
parent's to extend it); ``__init__(**params)`` builds ``self.params`` from it. ``build_method``
validates a config's ``method.params`` against ``Params`` generically (unknown key, wrong type,
a value outside a ``Literal`` choice: a ConfigError naming ``method.params.<key>``); a renamed
parameter (``renamed_params``, old name -> new name) gives an error naming the new name, and
:func:`upgrade_saved_params` renames it in a checkpoint's saved config instead.

Registry: ``build_method(name, **params)``. Built-in names map to "module:Class" strings and
are imported lazily; a method module may also call ``register_method(name, target)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from personsearch.comm import LOCAL, DistContext
from personsearch.errors import ConfigError
from personsearch.methods.context import MethodContext


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
    """Base class; subclasses declare ``Params`` and implement ``training_step`` and whatever
    else they need. Overrides of ``setup`` call ``super().setup(model, context)`` first."""

    name: str = ""
    supervised: ClassVar[bool] = False  # True: the context carries the true identities
    renamed_params: ClassVar[dict[str, str]] = {}  # old parameter name -> new name
    loss_weights: dict[str, float] = {}

    @dataclass(frozen=True)
    class Params:
        """No parameter."""

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)
        self.context: MethodContext | None = None

    @property
    def dist(self) -> DistContext:
        """The process group of the run (single process until ``setup``)."""
        return self.context.dist if self.context is not None else LOCAL

    def setup(self, model: nn.Module, context: MethodContext) -> None:
        """Keep the context; subclasses then build / initialise their memories."""
        self.context = context

    def restore(self, model: nn.Module, context: MethodContext, state: dict) -> None:
        """Prepare for resuming from ``state`` (a ``state_dict()`` result). Default: ``setup``
        then ``load_state_dict``; override to skip expensive initialisation whose result the
        state overwrites anyway."""
        self.setup(model, context)
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

    @classmethod
    def test_feature_extractors(cls, params: Any, fusion: str = "auto") -> dict[str, Any]:
        """Keyword arguments for ``evaluation.inference.run_model`` (``gallery_extractor`` /
        ``query_extractor``) for a checkpoint trained with ``params`` (a ``cls.Params``).
        ``fusion`` is ``personsearch eval --fusion``: "auto" (as trained), "on" or "off".
        Default: the model's own ``detect`` / ``embed_boxes``; a method without a test-time
        fusion refuses "on"."""
        if fusion == "on":
            raise ConfigError(f"--fusion on: method {cls.name or cls.__name__} has no test-time "
                              f"feature fusion (use auto or off)")
        return {}


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


def validate_params(cls: type, params: dict[str, Any]) -> Any:
    """``params`` (a config's ``method.params``) checked against ``cls.Params``: unknown keys,
    wrong types and values outside a ``Literal`` choice are ConfigErrors naming
    ``method.params.<key>``; an old parameter name gives an error naming the new one. Returns
    the ``cls.Params`` instance."""
    from personsearch.config import dataclass_from_dict

    for old in sorted(set(params) & set(cls.renamed_params)):
        raise ConfigError(f"method.params.{old}: renamed to {cls.renamed_params[old]} "
                          f"(method {cls.name or cls.__name__})")
    return dataclass_from_dict(cls.Params, params, "method.params")


def upgrade_saved_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved ``method.params`` with old parameter names replaced by the current
    ones (a checkpoint written before a rename still loads, resumes and evaluates). Names of
    methods not registered are returned unchanged."""
    if name not in _REGISTRY:
        return dict(params)
    renamed = method_class(name).renamed_params
    return {renamed.get(key, key): value for key, value in params.items()}


def build_method(name: str, **params: Any) -> Method:
    """Instantiate the method registered as ``name`` with validated keyword arguments."""
    cls = method_class(name)
    validated = validate_params(cls, params)
    method = cls(**{f.name: getattr(validated, f.name) for f in dataclasses.fields(validated)})
    method.name = name
    return method
