"""The inference paths of a loaded model: ``fp32`` (BN folded, channels_last), ``bf16`` (the same
under bfloat16 autocast) and ``int8`` (BN folded, the convolutional parts run by ONNX Runtime
from the checkpoint's INT8 graphs; precision.int8). ``prepare_path`` turns a freshly loaded
float32 model into one of them, in place.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from personsearch.errors import CheckpointError, ConfigError

__all__ = ["PATHS", "PRECISIONS", "InferencePath", "prepare_path"]

PATHS = ("fp32", "bf16", "int8")
PRECISIONS = ("auto", *PATHS)


@dataclass(frozen=True)
class InferencePath:
    """How a prepared model is run: ``bf16`` autocast or not, channels_last images or not."""

    name: str
    bf16: bool
    channels_last: bool

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()


def prepare_path(model: nn.Module, name: str, info: dict) -> InferencePath:
    """Prepare ``model`` (float32, as ``engine.checkpoint.load_model`` returns it, with its
    ``info``) for path ``name`` in place and return how to run it."""
    from personsearch.models.inference import prepare_for_inference

    if name not in PATHS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name in ("fp32", "bf16"):
        prepare_for_inference(model)
        return InferencePath(name, bf16=name == "bf16", channels_last=True)
    from personsearch.precision.checkpoint import int8_graphs
    from personsearch.precision.int8 import install_int8

    graphs = int8_graphs(info)
    if graphs is None:
        raise CheckpointError(f"{info.get('path')}: no INT8 graphs in this checkpoint; write an INT8 checkpoint "
                              f"with `personsearch quantize {info.get('path')} --out INT8.pt` and load that")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError(f"the INT8 path runs on the CPU (ONNX Runtime), the model is on {device}")
    prepare_for_inference(model, channels_last=False)  # ONNX Runtime takes contiguous arrays
    try:
        install_int8(model, graphs)
    except ValueError as error:
        raise CheckpointError(f"{info.get('path')}: {error}") from None
    return InferencePath("int8", bf16=False, channels_last=False)
