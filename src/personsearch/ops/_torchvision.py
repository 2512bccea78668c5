"""Optional dispatch to torchvision's compiled detection kernels.

Our ops are pure PyTorch and always available. Where torchvision imports *and* its compiled
operators load (``torch.ops.torchvision.nms`` exists, e.g. a matching CUDA install), ``nms`` and
``roi_align`` may hand the work to those kernels. Detection is lazy (first use, not import of
``personsearch``) and catches every exception: a torchvision whose C++ ops do not match the torch
build raises ``RuntimeError: operator torchvision::nms does not exist`` on import, which here just
means "not available".

Set the environment variable ``PERSONSEARCH_PURE_OPS=1`` to always use our implementations
(read on every call, so tests can toggle it).

On CUDA the pure ops are correct but slow (chunking decisions and greedy NMS blocks read sizes
back to the host: dozens of synchronisations per call). ``warn_if_slow_fallback(device)``
warns once per process when they run on CUDA because torchvision is missing or does not load
(install the ``gpu`` extra: ``pip install personsearch[gpu]``), and ``chunk_budget`` gives
them chunks ``CUDA_BUDGET_FACTOR`` times larger on CUDA (fewer chunks, fewer syncs; GPU
memory is not the 2-core CPU's cache).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
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


#: How much larger the pure ops' chunks are on CUDA than on the CPU.
CUDA_BUDGET_FACTOR = 8

_warned_slow_fallback = False


def chunk_budget(base: int, device: torch.device) -> int:
    """The element budget of one chunk of a pure op: ``base`` on the CPU, larger on CUDA."""
    return base * CUDA_BUDGET_FACTOR if device.type == "cuda" else base


def warn_if_slow_fallback(device: torch.device) -> bool:
    """Warn once per process when a pure op runs on CUDA without the compiled ones (not when
    ``PERSONSEARCH_PURE_OPS=1`` asked for it). Returns whether it warned now."""
    global _warned_slow_fallback
    if _warned_slow_fallback or device.type != "cuda" or os.environ.get(PURE_OPS_ENV, "") == "1":
        return False
    if _load() is not None:
        return False
    _warned_slow_fallback = True
    warnings.warn(
        f"personsearch: running the pure-PyTorch RoIAlign/NMS on CUDA ({_unavailable_reason}); "
        "they are correct but synchronise with the host many times per call. Install "
        "torchvision built for this torch: pip install 'personsearch[gpu]'",
        RuntimeWarning,
        stacklevel=3,
    )
    return True
