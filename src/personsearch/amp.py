"""Mixed precision boundaries: what autocast may lower and what must stay float32.

Under ``torch.autocast`` (bf16, or fp16 with a gradient scaler) matmuls and convolutions of
the network run in half precision. Three things must not:

- box coordinates (RoIs): bf16 has 8 significant bits, so 1499.3 px becomes 1496 px;
  ``ops.roi_align`` keeps them float32 (and the feature map for the compiled kernel too);
- the loss heads (OIM logits, cluster-contrast sums, multi-label, scale-invariant, DICL
  relation losses): their matmuls against memory banks quantise a logit of 30 to steps of
  0.125 in bf16. :func:`float32_loss` runs a loss function with autocast off and every
  floating-point tensor argument cast to float32;
- memory-bank similarities (``memory.DualMemory.similarities``): :func:`autocast_off`.

``autocast_off(device_type)`` is a context manager that disables autocast for that device
type (a no-op for device types autocast does not know, e.g. "meta").
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Any, Callable, TypeVar

import torch

__all__ = ["autocast_off", "float32_loss", "to_float32"]

F = TypeVar("F", bound=Callable[..., Any])


def autocast_off(device_type: str):
    """Context manager: autocast disabled for ``device_type`` (nothing for unknown types)."""
    if not torch.amp.is_autocast_available(device_type):
        return nullcontext()
    return torch.autocast(device_type, enabled=False)


def to_float32(value: Any) -> Any:
    """Floating-point tensors (also inside lists/tuples/dicts) -> float32; the rest unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float64 else value
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    return value


def _first_device_type(args: tuple, kwargs: dict) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device.type
    return "cpu"


def float32_loss(function: F) -> F:
    """Decorator for a loss function: run it with autocast off and its floating-point tensor
    arguments in float32 (float64 kept), so its value and gradient do not depend on the
    autocast dtype of the network around it."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with autocast_off(_first_device_type(args, kwargs)):
            return function(*to_float32(args), **to_float32(kwargs))

    return wrapper  # type: ignore[return-value]
