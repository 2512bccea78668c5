"""Optional dispatch to torchvision's compiled detection kernels.

Our ops are pure PyTorch and always available. Where torchvision imports *and* its compiled
operators load (``torch.ops.torchvision.nms`` exists, e.g. a matching CUDA install), ``nms`` and
``roi_align`` may hand the work to those kernels. Detection is lazy (first use, not import of
``personsearch``) and catches every exception: a torchvision whose C++ ops do not match the torch
build raises ``RuntimeError: operator torchvision::nms does not exist`` on import, which here just
means "not available".

Set the environment variable ``PERSONSEARCH_PURE_OPS=1`` to always use our implementations
(read on every call, so tests can toggle it).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

PURE_OPS_ENV = "PERSONSEARCH_PURE_OPS"

_UNSET = object()
_cached_ops: Any = _UNSET
_unavailable_reason: str | None = None


def _load() -> Any:
    global _cached_ops, _unavailable_reason
    if _cached_ops is not _UNSET:
        return _cached_ops
    _cached_ops = None
    try:
        if importlib.util.find_spec("torchvision") is None:
            _unavailable_reason = "torchvision is not installed"
            return None
        import torchvision  # noqa: F401  (registers torch.ops.torchvision.*)

        ops = torch.ops.torchvision
        _ = ops.nms  # raises if the compiled operator is missing
        _ = ops.roi_align
        _cached_ops = ops
    except Exception as exc:  # any failure means "not available"
        _unavailable_reason = f"torchvision ops do not load: {type(exc).__name__}: {exc}"
        _cached_ops = None
    return _cached_ops


def compiled_ops() -> Any:
    """``torch.ops.torchvision`` when usable and not disabled by the env var, else None."""
    if os.environ.get(PURE_OPS_ENV, "") == "1":
        return None
    return _load()


def torchvision_ops_available() -> bool:
    """True when torchvision's compiled ops load (ignores the env var)."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why the compiled ops are unavailable (None when they are)."""
    _load()
    return _unavailable_reason
