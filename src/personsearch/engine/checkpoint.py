"""Checkpoints: atomic writes, safe loads (``weights_only=True``), model rebuild, fingerprint.

Keys of a training checkpoint (docs/architecture.md, "Checkpoints")
------------------------------------------------------------------
format_version  int
model           state dict of the (unwrapped) model
model_kwargs    the ``build_model`` keyword arguments
method          method name (str);  method_state  ``method.state_dict()``
config          the full config as a plain dict
optimizer       ``optimizer.state_dict()``;  scheduler  ``LRSchedule.state_dict()``
epoch           0-based epoch in progress;  batch_in_epoch  batches of it already consumed
epoch_started   whether ``on_epoch_start`` already ran for ``epoch``
iteration       optimizer iterations (batches) consumed over the run
nonfinite_count consecutive non-finite steps so far
rng             list, one per rank: python / numpy / torch (/ cuda) RNG states
data_order      {"seed": int} (the epoch order is a function of seed and epoch)
world_size      number of processes that wrote it

Only tensors, numbers, strings, None, lists, tuples and dicts may be stored: ``sanitize``
converts numpy arrays and scalars to tensors / Python numbers and rejects anything else.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from personsearch.atomic import atomic_open
from personsearch.errors import CheckpointError

FORMAT_VERSION = 1


def sanitize(value: Any, where: str = "checkpoint") -> Any:
    """Convert ``value`` to what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: dict key {key!r} is not a string or int")
            out[key] = sanitize(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        items = [sanitize(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, torch.device):
        return str(value)
    raise TypeError(f"{where}: cannot store {type(value).__name__} in a checkpoint")


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`personsearch.atomic.atomic_open`: a temp
    file in the same folder, flushed and fsynced, then ``os.replace``). A crash at any point
    leaves the previous file intact."""
    path = Path(path)
    clean = sanitize(state)
    with atomic_open(path, fsync=True) as handle:
        torch.save(clean, handle)
    return path


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format (a zip archive) since PyTorch 1.6


def _load_problem(path: Path, error: BaseException) -> str:
    """Why ``torch.load`` failed, in our words: torch's own messages for these cases advise
    loading with ``weights_only=False`` (arbitrary code execution), which we never repeat."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(len(ZIP_MAGIC))
    except OSError as os_error:
        return f"cannot read the file ({os_error.strerror or os_error})"
    if size == 0:
        return "the file is empty (0 bytes): its write was interrupted or it was truncated"
    if head != ZIP_MAGIC:
        return (f"not a checkpoint written by personsearch ({size} bytes that are not a PyTorch "
                f"zip archive)")
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f" (e.g. {found.group(1)})" if found else ""
        return (f"holds Python objects{what} besides tensors, numbers, strings and plain "
                f"containers; such files are never unpickled (a personsearch checkpoint holds "
                f"none)")
    return f"the file is truncated or corrupt ({type(error).__name__} while reading its archive)"


def checkpoint_candidates(folder: Path, exclude: Path | None = None) -> list[Path]:
    """The ``*.pt`` files of ``folder``, newest first (modification time, then name)."""
    files = [f for f in folder.glob("*.pt") if f.is_file() and (exclude is None or f != exclude)]
    return sorted(files, key=lambda f: (f.stat().st_mtime, f.name), reverse=True)


def newest_intact_checkpoint(path: str | Path) -> Path | None:
    """The newest checkpoint beside ``path`` (same folder, ``path`` itself excluded) that
    loads, or None."""
    path = Path(path)
    for candidate in checkpoint_candidates(path.parent, exclude=path):
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure means "not intact"
            continue
        if isinstance(state, dict):
            return candidate
    return None


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that cannot be loaded; ``intact`` is the newest loadable checkpoint
    beside it (or None), so a caller can say how to continue from it."""

    def __init__(self, path: Path, problem: str, intact: Path | None) -> None:
        self.path = path
        self.problem = problem
        self.intact = intact
        hint = (f"; the newest intact checkpoint beside it is {intact}" if intact is not None
                else "; no intact checkpoint lies beside it")
        super().__init__(f"{path}: cannot load checkpoint: {problem}{hint}")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; CheckpointError naming the file when it
    is missing, truncated or holds objects other than tensors and plain containers (a
    :class:`CorruptCheckpointError` that names the newest intact checkpoint beside it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CorruptCheckpointError(path, _load_problem(path, error),
                                     newest_intact_checkpoint(path)) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a personsearch checkpoint (top level is not a dict)")
    return state


def fingerprint(model_kwargs: dict, state_dict: dict[str, torch.Tensor]) -> str:
    """Stable sha256 of the model kwargs and every weight (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sanitize_json(model_kwargs), sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sanitize_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): sanitize_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize_json(v) for v in value]
    return value


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint for inference (eval mode, on ``device``).

    Returns (model, info) with info keys: fingerprint, model_kwargs, method, epoch, iteration,
    config, path, int8 (None unless the checkpoint holds INT8 graphs).
    """
    state = load_checkpoint(path)
    for key in ("model_kwargs", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: not a personsearch checkpoint (no {key!r})")
    from personsearch.models import build_model

    model_kwargs = dict(state["model_kwargs"])
    for key in ("anchor_sizes", "anchor_ratios"):
        if isinstance(model_kwargs.get(key), list):
            model_kwargs[key] = tuple(model_kwargs[key])
    # The weights come from the checkpoint: never load ImageNet weights for a rebuild.
    model_kwargs["backbone_weights"] = None
    try:
        model = build_model(**model_kwargs)
    except TypeError as error:
        raise CheckpointError(f"{path}: model_kwargs do not fit build_model ({error})") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model ({error})") from None
    model.to(device).eval()
    info = {
        "fingerprint": fingerprint(state["model_kwargs"], state["model"]),
        "model_kwargs": state["model_kwargs"],
        "method": state.get("method"),
        "epoch": state.get("epoch"),
        "iteration": state.get("iteration"),
        "config": state.get("config"),
        "path": str(path),
        # INT8 graphs and check images of a checkpoint written by `personsearch quantize`
        # (personsearch.precision.checkpoint); None for any other checkpoint
        "int8": state.get("int8"),
    }
    return model, info


# ------------------------------------------------------------------------------ RNG states


def capture_rng_state() -> dict:
    """python / numpy / torch (and CUDA) RNG states as checkpoint-safe values."""
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((int(python["version"]), tuple(int(v) for v in python["state"]), python["gauss_next"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": int(numpy_state["pos"]),
            },
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in state["cuda"]])
