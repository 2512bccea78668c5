"""Run one convolutional part of the model (backbone body, RPN head, a res5 RoI head) through
ONNX Runtime instead of PyTorch: ``export_part`` writes the part's ONNX graph, ``OnnxPart`` is
the drop-in ``nn.Module`` that runs a (quantized) graph on tensors.

Shape glossary
--------------
B, H, W      images [B, 3, H, W] -> C4 map [B, C4, H/16, W/16]             (part "backbone")
C4 map       [B, C4, h, w] -> objectness [B, A, h, w], deltas [B, 4A, h, w]  (part "rpn_head")
K            RoI maps [K, C4, 14, 14] -> res5 maps [K, C5, 7, 7]              (parts "res5_*")

Every input dimension but the channels is dynamic, so one graph serves every image size and
RoI count. Inputs and outputs are float32 (ONNX Runtime's quantized graphs quantize and
dequantize at their borders).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["OnnxPart", "export_part", "ort_session"]

OPSET = 17


def _inline_shared_initializers(model_proto) -> None:
    """The TorchScript exporter stores equal tensors once and routes the copies through
    ``Identity`` nodes; ONNX Runtime's quantizer then cannot quantize a convolution bias that is
    not an initializer. Give every such output its own initializer again."""
    from onnx import numpy_helper

    graph = model_proto.graph
    initializers = {init.name: init for init in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0])
            graph.initializer.append(copy)
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def export_part(module: nn.Module, example: Tensor, output_names: list[str]) -> bytes:
    """The ONNX graph (bytes) of ``module`` (eval mode, BN already folded) for inputs shaped like
    ``example``, with dynamic batch and spatial dimensions."""
    import onnx

    dynamic = {"input": {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in output_names})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.13 calls the TorchScript exporter "legacy"; its graphs are what ONNX Runtime's
        # quantizer expects (one Conv node per convolution, weights as initializers)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), (example.contiguous(),), buffer, dynamo=False, input_names=["input"],
                          output_names=output_names, dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    _inline_shared_initializers(proto)
    return proto.SerializeToString()


def ort_session(graph: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session for ``graph`` using ``threads`` intra-op threads (default:
    torch's thread count, so one setting governs both runtimes)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # no busy-waiting between runs: the PyTorch ops between two parts need these cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxPart(nn.Module):
    """Runs ``graph`` (ONNX bytes) in place of a PyTorch part. Keeps the attributes the rest of
    the model reads from the part it replaces (``attributes``, e.g. the body's ``out_channels``
    and ``stride``). The session is created on first use with the then-current thread count."""

    def __init__(self, name: str, graph: bytes, attributes: dict | None = None) -> None:
        super().__init__()
        self.part_name = name
        self.graph = graph
        self._session = None
        for key, value in (attributes or {}).items():
            setattr(self, key, value)

    def __getstate__(self) -> dict:
        state = super().__getstate__().copy()
        state["_session"] = None  # a copy (copy.deepcopy, pickle) starts its own session
        return state

    @property
    def session(self):
        if self._session is None:
            self._session = ort_session(self.graph)
        return self._session

    def forward(self, inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if inputs.device.type != "cpu":
            raise RuntimeError(f"{self.part_name}: the INT8 path runs on the CPU, got a {inputs.device} tensor")
        array = np.ascontiguousarray(inputs.detach().float().numpy())
        outputs = [torch.from_numpy(out) for out in self.session.run(None, {"input": array})]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def extra_repr(self) -> str:
        return f"{self.part_name}, {len(self.graph) / 1e6:.1f} MB ONNX graph"
