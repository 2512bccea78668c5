"""``load_for_inference``: the one call `eval`, `index build` and `serve` use to load a
checkpoint at a ``--precision`` (auto | fp32 | bf16 | int8)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from torch import nn

from personsearch.errors import ConfigError
from personsearch.precision.paths import PRECISIONS, InferencePath, prepare_path

__all__ = ["load_for_inference"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_for_inference(checkpoint: str | Path, precision: str = "fp32", *, device: str = "cpu",
                       test_proposals: int | None = None, min_size: int | None = None,
                       max_size: int | None = None, log: Callable[[str], None] = _stderr,
                       refresh: bool = False) -> tuple[nn.Module, dict, InferencePath]:
    """(model prepared for the path, load_model's info, the path). ``auto`` measures the
    candidates once per machine and model (precision.auto) and logs what it chose and why; the
    test proposals and sizes (defaults: the checkpoint's) are set before measuring."""
    from personsearch.engine.checkpoint import load_model
    from personsearch.models.inference import current_test_proposals, set_test_proposals

    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model, info = load_model(checkpoint, device)
    info["checkpoint_test_proposals"] = current_test_proposals(model)
    if test_proposals is not None:
        try:
            set_test_proposals(model, test_proposals)
        except ValueError as error:
            raise ConfigError(f"--test-proposals: {error}") from None
    name = precision
    if precision == "auto":
        if str(device) != "cpu":
            name = "fp32"
            log(f"precision auto: fp32 (the candidates are measured on the CPU only, the device is {device})")
        else:
            from personsearch.precision.auto import choose_path

            eval_config = (info.get("config") or {}).get("eval") or {}
            choice = choose_path(model, info, min_size=int(min_size or eval_config.get("min_size", 900)),
                                 max_size=int(max_size or eval_config.get("max_size", 1500)),
                                 test_proposals=current_test_proposals(model), refresh=refresh)
            for message in choice.messages:
                log(message)
            name = choice.name
    path = prepare_path(model, name, info)
    return model, info, path
