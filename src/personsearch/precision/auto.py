"""``--precision auto``: measure the candidate paths once on this machine and model, keep the
fastest whose accuracy check passes (precision.check), cache the choice.

Candidates: ``fp32`` always (the reference; it cannot fail); ``bf16`` only where the CPU has
native bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in its flags: elsewhere torch
emulates it, several times slower than fp32); ``int8`` only for a checkpoint with INT8 graphs
(``personsearch quantize``). Each skipped candidate is reported with its reason.

Check images: the held-out training images stored with the INT8 graphs; a checkpoint without
them (float32 only) is checked on two fixed procedural images (``procedural_images``).

Cache: one JSON file per (machine, model) in ``precision/`` of the user cache folder
(``data.parse_cache.cache_dir``: $PERSONSEARCH_CACHE_DIR, else $XDG_CACHE_HOME/personsearch,
else ~/.cache/personsearch; ``PERSONSEARCH_CACHE_DIR=off``: measured every time). The machine key
is the CPU model and flags, torch and onnxruntime versions and the thread count; the model key
is the checkpoint fingerprint, the INT8 graphs' digest, the input sizes and the test proposals.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from personsearch.precision.check import (
    PathRun,
    Tolerances,
    boxes_to_embed,
    compare_runs,
    embed_given,
    failed_tolerances,
    run_path,
)
from personsearch.precision.paths import InferencePath, prepare_path

__all__ = ["AutoChoice", "choose_path", "machine_record", "native_bf16", "procedural_images"]

CACHE_FORMAT = 1
PathBuilder = Callable[[nn.Module], InferencePath]


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, sorted(flags)


def machine_record() -> dict:
    """What the measured speeds depend on: CPU model and flags, library versions, threads."""
    cpu, flags = _cpu_model_and_flags()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {"cpu": cpu, "cpu_flags": flags, "torch": torch.__version__, "onnxruntime": ort_version,
            "threads": torch.get_num_threads()}


def native_bf16(flags: list[str]) -> bool:
    return "avx512_bf16" in flags or "amx_bf16" in flags


def procedural_images(count: int = 2, height: int = 540, width: int = 960) -> list[np.ndarray]:
    """Fixed images (seeded smooth colour noise with darker upright blobs) for the check of a
    checkpoint that carries no check images."""
    rng = np.random.default_rng(20240611)
    images = []
    for _ in range(count):
        coarse = rng.uniform(40, 220, size=(height // 30 + 2, width // 30 + 2, 3))
        image = np.repeat(np.repeat(coarse, 30, axis=0), 30, axis=1)[:height, :width]
        for _ in range(4):
            x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 160))
            image[y:y + 150, x:x + 50] = rng.uniform(0, 120, size=3)
        images.append(image.astype(np.uint8))
    return images


@dataclass
class AutoChoice:
    name: str
    record: dict
    from_cache: bool
    messages: list[str] = field(default_factory=list)


def _model_key(info: dict, min_size: int, max_size: int, test_proposals: int) -> dict:
    from personsearch.precision.checkpoint import int8_graphs
    from personsearch.precision.int8 import graphs_digest

    graphs = int8_graphs(info)
    return {"fingerprint": info["fingerprint"], "int8_graphs": None if graphs is None else graphs_digest(graphs),
            "min_size": min_size, "max_size": max_size, "test_proposals": test_proposals}


def _cache_file(machine: dict, model_key: dict, folder: Path) -> Path:
    key = hashlib.sha256(json.dumps({"machine": machine, "model": model_key, "format": CACHE_FORMAT},
                                    sort_keys=True).encode()).hexdigest()
    return folder / "precision" / f"{model_key['fingerprint'][:12]}-{key[:16]}.json"


def default_builders(info: dict, machine: dict) -> tuple[dict[str, PathBuilder], dict[str, str]]:
    """(candidate name -> builder, skipped name -> reason) for this checkpoint and machine."""
    builders: dict[str, PathBuilder] = {"fp32": lambda model: prepare_path(model, "fp32", info)}
    skipped = {}
    if native_bf16(machine["cpu_flags"]):
        builders["bf16"] = lambda model: prepare_path(model, "bf16", info)
    else:
        skipped["bf16"] = "no native bfloat16 on this CPU (flags lack avx512_bf16 and amx_bf16)"
    if info.get("int8") is not None:
        builders["int8"] = lambda model: prepare_path(model, "int8", info)
    else:
        skipped["int8"] = "the checkpoint has no INT8 graphs (personsearch quantize)"
    return builders, skipped


def _measure(model: nn.Module, builders: dict[str, PathBuilder], images: list[np.ndarray], min_size: int,
             max_size: int, tolerances: Tolerances, score_thresh: float) -> dict:
    """Run every candidate on ``images``; float32 first (its detections give the boxes)."""
    if "fp32" not in builders:
        raise ValueError("the fp32 path is the reference of the check and must be a candidate")
    results, reference, boxes = {}, None, None
    for name in ["fp32", *[n for n in builders if n != "fp32"]]:
        candidate = copy.deepcopy(model)
        path = builders[name](candidate)
        if reference is None:
            first = run_path(candidate, path, images, min_size, max_size)
            boxes = boxes_to_embed(first, images, min_size, max_size, score_thresh)
            reference = PathRun(first.seconds_per_image, first.detections,
                                embed_given(candidate, path, images, min_size, max_size, boxes))
            results[name] = {"seconds_per_image": reference.seconds_per_image, "passed": True, "failures": []}
            continue
        run = run_path(candidate, path, images, min_size, max_size, boxes)
        comparison = compare_runs(reference, run, score_thresh)
        failures = failed_tolerances(comparison, tolerances)
        results[name] = {"seconds_per_image": run.seconds_per_image, **comparison, "passed": not failures,
                         "failures": failures}
        del candidate
    return results


def choose_path(model: nn.Module, info: dict, *, min_size: int, max_size: int, test_proposals: int,
                builders: dict[str, PathBuilder] | None = None, images: list[np.ndarray] | None = None,
                folder: Path | None = None, refresh: bool = False, tolerances: Tolerances = Tolerances(),
                score_thresh: float = 0.5) -> AutoChoice:
    """The fastest candidate path that passes the accuracy check, measured on ``model`` (float32,
    unprepared; left unchanged) or read from the cache. ``builders`` / ``images`` default to
    ``default_builders`` / the checkpoint's check images."""
    from personsearch.atomic import atomic_write_text
    from personsearch.data.parse_cache import cache_dir
    from personsearch.precision.checkpoint import int8_check_images

    machine = machine_record()
    model_key = _model_key(info, min_size, max_size, test_proposals)
    folder = folder or cache_dir()
    cache_file = None if folder is None else _cache_file(machine, model_key, folder)
    if not refresh and cache_file is not None and cache_file.is_file():
        try:
            record = json.loads(cache_file.read_text(encoding="utf-8"))
            if record.get("format") == CACHE_FORMAT and record.get("chosen") in ("fp32", "bf16", "int8"):
                return AutoChoice(record["chosen"], record, True,
                                  [f"precision auto: {record['chosen']} (measured {record['measured_at']}, cached in {cache_file})"])
        except (OSError, ValueError):
            pass  # an unreadable cache entry is measured again (and rewritten)
    skipped = {}
    if builders is None:
        builders, skipped = default_builders(info, machine)
    messages = [f"precision auto: {name} skipped: {reason}" for name, reason in skipped.items()]
    if list(builders) == ["fp32"]:  # nothing to measure (and nothing worth caching)
        record = {"format": CACHE_FORMAT, "chosen": "fp32", "candidates": {}, "skipped": skipped,
                  "machine": machine, "model": model_key}
        return AutoChoice("fp32", record, False, [*messages, "precision auto: chose fp32 (the only candidate)"])
    if images is None:
        images = int8_check_images(info) or procedural_images()
    start = time.perf_counter()
    results = _measure(model, builders, images, min_size, max_size, tolerances, score_thresh)
    passing = {name: r for name, r in results.items() if r["passed"]}
    chosen = min(passing, key=lambda name: passing[name]["seconds_per_image"])
    for name, result in results.items():
        line = f"precision auto: {name} {result['seconds_per_image']:.3f} s/image"
        if name != "fp32":
            line += (f", embedding cosine to fp32 mean {result['cosine_mean']:.4f} min {result['cosine_min']:.4f}, "
                     f"detection agreement {result['detection_agreement']:.3f}")
        messages.append(line)
        if not result["passed"]:
            messages.append(f"precision auto: {name} FAILED its accuracy check ({'; '.join(result['failures'])}): not used")
    faster_failed = [n for n, r in results.items()
                     if not r["passed"] and r["seconds_per_image"] < results[chosen]["seconds_per_image"]]
    messages.append(f"precision auto: chose {chosen}" + (f" (falling back from {', '.join(faster_failed)}, "
                                                          "which failed the accuracy check)" if faster_failed else ""))
    record = {"format": CACHE_FORMAT, "chosen": chosen, "candidates": results, "skipped": skipped,
              "machine": machine, "model": model_key, "check_images": len(images),
              "tolerances": asdict(tolerances), "measure_seconds": time.perf_counter() - start,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if cache_file is None:
        messages.append("precision auto: not cached (PERSONSEARCH_CACHE_DIR=off)")
    else:
        atomic_write_text(cache_file, json.dumps(record, indent=2))
        messages.append(f"precision auto: choice cached in {cache_file}")
    return AutoChoice(chosen, record, False, messages)
