"""Post-training static INT8 quantization of a trained model's convolutional parts with ONNX
Runtime (QDQ graphs: per-channel symmetric int8 weights, per-tensor uint8 activations, ranges
calibrated by min/max on the inputs the parts see on training images), and the swap of those
parts into a model for inference.

Shape glossary
--------------
part inputs   backbone [1, 3, H, W]; rpn_head [1, C4, H/16, W/16]; <head>.res5 [K, C4, 14, 14]
              with K at most ``rois_per_call`` rows sampled from each RoI batch
graphs        ONNX bytes per part, stored in a checkpoint as uint8 tensors [n_bytes]

Quantized: the backbone body (stem..res4), the RPN head (3x3 conv and its two 1x1 outputs) and
every res5 RoI head (SeqNet: box_head and reid_head; CGPS: head) - the convolutions, 98% of
the arithmetic. Kept float32: RoIAlign, the box predictors, the re-id regressor and the
embedding head (linear layers + BN-neck over pooled features: little arithmetic, and the
embedding is what the search ranks by), box decoding and NMS.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.models.roi_heads import ResHead
from personsearch.precision.onnx_part import OnnxPart, export_part

__all__ = ["Part", "quantized_parts", "model_parts", "install_int8", "graphs_digest", "QUANTIZATION_SETTINGS"]

QUANTIZATION_SETTINGS = {
    "runtime": "onnxruntime",
    "format": "QDQ",
    "weights": "int8, per output channel, symmetric",
    "activations": "uint8, per tensor, min/max calibration",
    "kept_float32": "RoIAlign, box predictors, re-id regressor, embedding head, box decoding, NMS",
}


@dataclass
class Part:
    """One convolutional part: ``name``, the module, how to put a replacement in its place,
    its output names and the attributes of the module the rest of the model reads."""

    name: str
    module: nn.Module
    replace: Callable[[nn.Module], None]
    outputs: list[str]
    attributes: dict


def _res5_parts(roi_heads: nn.Module) -> list[Part]:
    parts, seen = [], set()
    for attr in ("box_head", "reid_head", "head"):
        head = getattr(roi_heads, attr, None)
        if not isinstance(head, ResHead) or id(head) in seen:
            continue  # a shared res5 (separate_box_head false) is quantized once
        seen.add(id(head))
        parts.append(Part(f"{attr}.res5", head.res5, lambda new, head=head: setattr(head, "res5", new), ["res5"], {}))
    if not parts:
        raise TypeError(f"{type(roi_heads).__name__}: no res5 RoI head (box_head / reid_head / head) to quantize")
    return parts


def model_parts(model: nn.Module) -> list[Part]:
    """The parts of a PersonSearchModel that run quantized."""
    body = model.backbone
    return [
        Part("backbone", body, lambda new: setattr(model, "backbone", new), ["c4"],
             {"out_channels": body.out_channels, "stride": body.stride}),
        Part("rpn_head", model.rpn.head, lambda new: setattr(model.rpn, "head", new), ["objectness", "deltas"], {}),
        *_res5_parts(model.roi_heads),
    ]


class _InputRecorder:
    """Forward pre-hooks keeping (a sample of) every input each part sees, as float32 numpy."""

    def __init__(self, parts: list[Part], rois_per_call: int, seed: int = 0) -> None:
        self.inputs: dict[str, list[np.ndarray]] = {part.name: [] for part in parts}
        self.rois_per_call = rois_per_call
        self.generator = torch.Generator().manual_seed(seed)
        self.handles = [part.module.register_forward_pre_hook(self._hook(part.name)) for part in parts]

    def _hook(self, name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            inputs = args[0].detach().float()
            if name.endswith(".res5") and inputs.shape[0] > self.rois_per_call:
                rows = torch.randperm(inputs.shape[0], generator=self.generator)[: self.rois_per_call]
                inputs = inputs[rows.sort().values]
            if inputs.shape[0]:
                self.inputs[name].append(np.ascontiguousarray(inputs.numpy()))
        return record

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over recorded inputs, with the ``set_range``
    its strided calibration uses: with a stride of 1 the calibrator keeps one input's
    intermediate tensors in memory at a time (a 900x1500 image's backbone activations are
    over 1 GB) and merges the min/max ranges as it goes."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self._arrays = arrays
        self._pending: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._arrays)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = list(self._arrays[start_index:end_index])

    def get_next(self) -> dict | None:
        return {"input": self._pending.pop(0)} if self._pending else None


def _quantize_graph(graph: bytes, calibration: list[np.ndarray], workdir: Path, name: str) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, prepared, target = (workdir / f"{name}.{suffix}.onnx" for suffix in ("fp32", "pre", "int8"))
    source.write_bytes(graph)
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(target), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        extra_options={"CalibStridedMinMax": 1, "WeightSymmetric": True},
    )
    return target.read_bytes()


def quantized_parts(model: nn.Module, calibration_batches: Iterable[tuple[Tensor, list[tuple[int, int]]]],
                    rois_per_call: int = 32) -> dict[str, bytes]:
    """INT8 ONNX graphs (bytes) of ``model``'s parts, calibrated on the inputs they see while
    ``model`` (eval mode, BN folded, float32, contiguous) runs ``detect`` on
    ``calibration_batches`` ((images [1, 3, H, W], image_sizes) each)."""
    parts = model_parts(model)
    recorder = _InputRecorder(parts, rois_per_call)
    try:
        with torch.no_grad():
            for images, image_sizes in calibration_batches:
                model.detect(images, image_sizes)
    finally:
        recorder.close()
    empty = [name for name, arrays in recorder.inputs.items() if not arrays]
    if empty:
        raise ValueError(f"calibration gave no inputs to {', '.join(empty)} (no proposals on any image?)")
    graphs = {}
    with tempfile.TemporaryDirectory(prefix="personsearch-int8-") as workdir:
        for part in parts:
            example = torch.from_numpy(recorder.inputs[part.name][0][:1])
            graph = export_part(part.module, example, part.outputs)
            graphs[part.name] = _quantize_graph(graph, recorder.inputs.pop(part.name), Path(workdir), part.name)
    return graphs


def install_int8(model: nn.Module, graphs: dict[str, bytes]) -> nn.Module:
    """Replace ``model``'s parts by ONNX Runtime modules running ``graphs`` (in place; the
    model must be BN-folded like the graphs were). Every part must have a graph."""
    parts = model_parts(model)
    missing = sorted({part.name for part in parts} - set(graphs))
    extra = sorted(set(graphs) - {part.name for part in parts})
    if missing or extra:
        raise ValueError(f"INT8 graphs do not fit this model: missing {missing}, unknown {extra}")
    for part in parts:
        part.replace(OnnxPart(part.name, graphs[part.name], part.attributes))
    return model


def graphs_digest(graphs: dict[str, bytes]) -> str:
    """sha256 over the part names and graph bytes (identifies a quantization)."""
    digest = hashlib.sha256()
    for name in sorted(graphs):
        digest.update(name.encode() + b"|")
        digest.update(graphs[name])
    return digest.hexdigest()
