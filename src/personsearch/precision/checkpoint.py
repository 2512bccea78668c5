"""``quantize_checkpoint``: a trained checkpoint -> an INT8 checkpoint, calibrated on training
images of the checkpoint's own dataset.

The INT8 checkpoint is the source checkpoint (same ``model`` weights, so the same fingerprint:
an index built with one precision is searched with any other) without its training state
(optimizer, scheduler, RNG), plus ``int8``:

    graphs        {part name: uint8 tensor [n_bytes]} ONNX Runtime QDQ graphs (precision.int8)
    check_images  list of uint8 tensors [H, W, 3]: training images NOT used for calibration, the
                  fixed inputs of the accuracy check of ``--precision auto`` (precision.check)
    calibration   dataset format / root / image names / sizes / RoIs per call
    settings      what is quantized how (precision.int8.QUANTIZATION_SETTINGS)
    versions      onnxruntime / torch versions that wrote it
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from personsearch.errors import CheckpointError, DatasetError

__all__ = ["quantize_checkpoint", "int8_graphs", "int8_check_images", "TRAINING_STATE_KEYS"]

TRAINING_STATE_KEYS = ("optimizer", "scheduler", "rng")


def _pick_records(records: list, count: int, seed: int) -> list:
    if len(records) < count:
        raise DatasetError(f"calibration needs {count} training images, the split has {len(records)}")
    order = np.random.default_rng(seed).permutation(len(records))[:count]
    return [records[i] for i in sorted(order)]


def _batch(image: np.ndarray, min_size: int, max_size: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    from personsearch.data.transforms import batch_images, preprocess

    tensor, _ = preprocess(image, min_size, max_size)
    return batch_images([tensor])


def quantize_checkpoint(checkpoint: str | Path, out: str | Path, *, images: int = 32, check_images: int = 2,
                        fmt: str | None = None, root: str | None = None, rois_per_call: int = 32,
                        seed: int = 0, progress: bool = True) -> dict:
    """Write the INT8 checkpoint of ``checkpoint`` to ``out``; returns its ``int8`` record
    without the graphs. ``fmt`` / ``root`` default to the checkpoint config's data section."""
    from tqdm import tqdm

    from personsearch.data.splits import load_split
    from personsearch.data.transforms import load_image
    from personsearch.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
    from personsearch.models.inference import prepare_for_inference
    from personsearch.precision.int8 import QUANTIZATION_SETTINGS, quantized_parts

    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if state.get("int8") is not None:
        raise CheckpointError(f"{checkpoint}: already an INT8 checkpoint; quantize the float32 checkpoint it came from")
    model, info = load_model(checkpoint)
    config = info.get("config") or {}
    data_config, eval_config = config.get("data") or {}, config.get("eval") or {}
    fmt = fmt or data_config.get("format")
    root = root or data_config.get("root")
    if not fmt or not root:
        raise CheckpointError(f"{checkpoint}: its config names no dataset (data.format / data.root): "
                              "pass --format and --root of the training images to calibrate on")
    min_size, max_size = int(eval_config.get("min_size", 900)), int(eval_config.get("max_size", 1500))
    chosen = _pick_records(load_split(fmt, root, "train", read_sizes=False), images + check_images, seed)
    calibration, held_out = chosen[:images], chosen[images:]

    prepare_for_inference(model, channels_last=False)
    batches = (_batch(load_image(r.image_path), min_size, max_size)
               for r in tqdm(calibration, desc="calibrating", unit="image", disable=not progress))
    graphs = quantized_parts(model, batches, rois_per_call=rois_per_call)

    import onnxruntime

    record = {
        "check_images": [torch.from_numpy(np.ascontiguousarray(load_image(r.image_path))) for r in held_out],
        "calibration": {"format": fmt, "root": str(root), "split": "train", "images": [r.image_name for r in calibration],
                        "check_images": [r.image_name for r in held_out], "min_size": min_size,
                        "max_size": max_size, "rois_per_call": rois_per_call, "seed": seed},
        "settings": dict(QUANTIZATION_SETTINGS),
        "versions": {"onnxruntime": str(onnxruntime.__version__), "torch": str(torch.__version__)},
    }
    out_state = {key: value for key, value in state.items() if key not in TRAINING_STATE_KEYS}
    out_state["int8"] = {**record, "graphs": {name: torch.frombuffer(bytearray(graph), dtype=torch.uint8)
                                              for name, graph in graphs.items()}}
    save_checkpoint(out, out_state)
    summary = copy.deepcopy({key: value for key, value in record.items() if key != "check_images"})
    summary["graph_megabytes"] = {name: len(graph) / 1e6 for name, graph in graphs.items()}
    return summary


def int8_graphs(info: dict) -> dict[str, bytes] | None:
    """The INT8 graphs of a loaded checkpoint (``load_model``'s info), or None."""
    record = info.get("int8")
    if record is None:
        return None
    return {name: bytes(tensor.numpy().tobytes()) for name, tensor in record["graphs"].items()}


def int8_check_images(info: dict) -> list[np.ndarray]:
    """The held-out check images stored with the INT8 graphs ([] without them)."""
    record = info.get("int8")
    return [] if record is None else [tensor.numpy() for tensor in record.get("check_images", [])]
