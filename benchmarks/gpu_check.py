"""GPU check: train a paper preset on a synthetic dataset for a few hundred iterations with
mixed precision, evaluate it, and print JSON (issue 11 item 5, issue 17).

    # on a CUDA machine (generates a synthetic PRW-format set unless --data is given)
    .venv/bin/python benchmarks/gpu_check.py --preset configs/ssl_arxiv_prw.yaml --iterations 300
    # end to end on the CPU in seconds (tiny data, small model; what the tests run)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --smoke

Reported: ``iterations_per_s`` (training, after ``--warmup`` iterations), ``test_images_per_s``
(gallery + query images over the evaluation's wall time), ``peak_gpu_memory_gib`` (CUDA only,
``torch.cuda.max_memory_allocated``), ``losses_finite`` (every logged loss of every step),
``metrics`` (mAP, top-1, ... on the synthetic test split), ``syncs_per_step`` (host-device
synchronisations per training step: on CUDA counted by ``torch.cuda.set_sync_debug_mode``'s
warnings, on the CPU by the calls that would synchronise — item/tolist/int/bool of a tensor,
nonzero, boolean indexing, ...), ``bank_devices`` (the device of every memory-bank tensor of
the method) and ``amp`` (the autocast dtype). The preset is used unchanged except the data
root, the number of iterations (one epoch cut to ``--iterations`` batches), the AMP setting
and, with ``--smoke``, a small model and tiny images.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
SYNC_FUNCTIONS = {"item", "tolist", "__int__", "__bool__", "__float__", "__index__", "cpu",
                  "numpy", "nonzero", "argwhere", "unique", "masked_select", "bincount",
                  "repeat_interleave", "unique_consecutive"}

SMOKE_MODEL = {"backbone": "small", "frozen_stem": False, "rpn_pre_nms_top_n_train": 200,
               "rpn_post_nms_top_n_train": 64, "rpn_pre_nms_top_n_test": 100,
               "rpn_post_nms_top_n_test": 32, "roi_batch_size_per_image": 16,
               "box_score_thresh": 0.0, "detections_per_image": 20}


class CpuSyncCounter(TorchFunctionMode):
    """Counts calls that would make a CUDA stream wait for the host (CPU runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_FUNCTIONS:
            self.count += 1
        elif name in ("__getitem__", "__setitem__") and len(args) > 1:
            index = args[1] if isinstance(args[1], (tuple, list)) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.count += 1
        return func(*args, **(kwargs or {}))


class LimitedLoader:
    """The first ``limit`` batches of each epoch of a TrainLoader."""

    def __init__(self, loader, limit: int) -> None:
        self.loader = loader
        self.limit = min(limit, len(loader))
        self.batch_size = loader.batch_size

    def __len__(self) -> int:
        return self.limit

    def use_device(self, device: torch.device) -> None:
        self.loader.use_device(device)

    def batches(self, epoch: int, start_batch: int = 0):
        yield from itertools.islice(self.loader.batches(epoch, start_batch), self.limit - start_batch)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step_probe(device: torch.device, warmup: int):
    """A trainer hook timing steps after ``warmup``, counting syncs and checking losses."""
    from personsearch.engine.hooks import Hook

    class StepProbe(Hook):
        def __init__(self) -> None:
            self.steps = 0
            self.timed_steps = 0
            self.seconds = 0.0
            self.syncs = 0
            self.finite = True
            self.losses: dict[str, float] = {}
            self._start = 0.0
            self._counter: CpuSyncCounter | None = None
            self._warnings = None
            self._caught: list = []

        def before_step(self, trainer) -> None:
            if self.steps < warmup:
                return
            _synchronize(device)
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
                self._warnings = warnings.catch_warnings(record=True)
                self._caught = self._warnings.__enter__()
                warnings.simplefilter("always")
            else:
                self._counter = CpuSyncCounter()
                self._counter.__enter__()
            self._start = time.perf_counter()

        def after_step(self, trainer) -> None:
            step = trainer.last_step
            self.finite &= bool(step.get("finite", False)) and all(
                math.isfinite(v) for v in step.get("losses", {}).values())
            self.losses = dict(step.get("losses", {}))
            if self.steps >= warmup:
                if device.type == "cuda":
                    _synchronize(device)
                    self.seconds += time.perf_counter() - self._start
                    torch.cuda.set_sync_debug_mode(0)
                    self.syncs += sum("synchroniz" in str(w.message) for w in self._caught)
                    self._warnings.__exit__(None, None, None)
                else:
                    self.seconds += time.perf_counter() - self._start
                    self._counter.__exit__(None, None, None)
                    self.syncs += self._counter.count
                self.timed_steps += 1
            self.steps += 1

    return StepProbe()


def bank_devices(method) -> dict[str, str]:
    memory = getattr(method, "memory", None)
    if memory is None:
        return {}
    return {name: str(value.device) for name, value in sorted(vars(memory).items())
            if isinstance(value, torch.Tensor)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=str(ROOT / "configs" / "ssl_arxiv_prw.yaml"))
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    parser.add_argument("--data", default=None, help="existing synthetic PRW-format dataset")
    parser.add_argument("--frames", type=int, default=600, help="frames to generate without --data")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10, help="untimed first iterations")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"])
    parser.add_argument("--smoke", action="store_true", help="tiny data and small model (seconds)")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    from personsearch.cli.train import method_context
    from personsearch.comm import LOCAL
    from personsearch.config import load_config, method_kwargs, model_kwargs, train_sizes
    from personsearch.data import load_split
    from personsearch.data.loader import build_train_loader
    from personsearch.data.splits import slot_offsets
    from personsearch.data.synth import generate_dataset
    from personsearch.engine.trainer import Trainer, seed_everything
    from personsearch.evaluation import evaluate_model
    from personsearch.methods.base import build_method
    from personsearch.models import build_model

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    amp = args.amp
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "none"
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)

    data = Path(args.data) if args.data else work / "data"
    generation_s = 0.0
    if not args.data:
        start = time.perf_counter()
        if args.smoke:
            generate_dataset(data, fmt="prw", frames=10, seed=0, width=320, height=180, workers=1)
        else:
            generate_dataset(data, fmt="prw", frames=args.frames, seed=0, width=1920, height=1080)
        generation_s = time.perf_counter() - start

    overrides = [f"data.root={json.dumps(str(data))}", "data.format=prw",
                 f"train.out_dir={json.dumps(str(work / 'run'))}", "train.progress=false",
                 "train.diagnostics=false", "train.eval_every_epochs=0", "solver.epochs=1",
                 f"solver.bf16={'true' if amp == 'bf16' else 'false'}",
                 f"solver.fp16={'true' if amp == 'fp16' else 'false'}",
                 f"train.device={device.type if device.index is None else f'{device.type}:{device.index}'}"]
    if args.smoke:
        overrides += [f"model.{key}={json.dumps(value)}" for key, value in SMOKE_MODEL.items()]
        overrides += ["data.min_size=180", "data.max_size=320", "data.batch_size=2", "data.workers=0",
                      "eval.min_size=180", "eval.max_size=320", "solver.warmup_iters=2",
                      "data.multi_scale=[]"]
    cfg = load_config(args.preset, overrides)
    seed_everything(cfg.train.seed)
    records = load_split(cfg.data.format, cfg.data.root, "train")
    mask_loader = None
    if cfg.data.masks:
        from functools import partial

        from personsearch.data.masks import load_person_masks

        mask_loader = partial(load_person_masks, cfg.data.root)
    loader = build_train_loader(records, slot_offsets(records), sizes=train_sizes(cfg),
                                flip=cfg.data.flip, batch_size=cfg.data.batch_size,
                                seed=cfg.train.seed, num_workers=cfg.data.workers,
                                mask_loader=mask_loader)
    kwargs = model_kwargs(cfg)
    model = build_model(**kwargs)
    method = build_method(cfg.method.name, **method_kwargs(cfg))
    context, hooks = method_context(method, cfg, records, device, LOCAL)
    warmup = min(args.warmup, max(0, args.iterations - 1))
    probe = make_step_probe(device, warmup)
    trainer = Trainer(model, method, LimitedLoader(loader, args.iterations), solver=cfg.solver,
                      train=cfg.train, context=context,
                      model_kwargs=kwargs, hooks=[*hooks, probe])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    banks = bank_devices(method)

    gallery = load_split(cfg.data.format, cfg.data.root, "gallery")
    queries = load_split(cfg.data.format, cfg.data.root, "query")
    _synchronize(device)
    start = time.perf_counter()
    metrics = evaluate_model(trainer.module.eval(), fmt=cfg.data.format, root=cfg.data.root,
                             gallery_size=cfg.eval.gallery_size, det_thresh=cfg.eval.det_thresh,
                             min_size=cfg.eval.min_size, max_size=cfg.eval.max_size,
                             device=device, bf16=amp == "bf16", progress=False)
    _synchronize(device)
    eval_s = time.perf_counter() - start
    return {
        "preset": str(args.preset),
        "method": cfg.method.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "smoke": bool(args.smoke),
        "amp": amp,
        "iterations": probe.steps,
        "timed_iterations": probe.timed_steps,
        "iterations_per_s": probe.timed_steps / probe.seconds if probe.seconds > 0 else None,
        "train_seconds": train_s,
        "test_images": len(gallery) + len(queries),
        "test_images_per_s": (len(gallery) + len(queries)) / eval_s,
        "eval_seconds": eval_s,
        "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                                if device.type == "cuda" else None),
        "losses_finite": probe.finite,
        "last_losses": probe.losses,
        "syncs_per_step": probe.syncs / probe.timed_steps if probe.timed_steps else None,
        "sync_count_method": ("torch.cuda.set_sync_debug_mode warnings" if device.type == "cuda"
                              else "calls that would synchronise (CPU run)"),
        "bank_devices": banks,
        "metrics": metrics,
        "data": str(data),
        "generation_seconds": generation_s,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2))
    return 0 if result["losses_finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
