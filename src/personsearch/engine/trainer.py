"""The training loop: one small step function plus hooks (engine/hooks.py).

Per step: ``method.training_step`` (under bf16 or fp16 autocast when enabled; the loss heads
compute in float32 inside it) -> each loss times ``method.loss_weights.get(name, 1.0)`` -> sum
-> backward (scaled by a ``torch.amp.GradScaler`` with fp16) -> gradient-norm clipping -> SGD
step -> pending update gathered over processes -> ``method.after_step(pending)`` under
``torch.no_grad()``. A non-finite total loss (or gradient norm) skips the step and is logged;
(the model's buffers, e.g. BatchNorm statistics, are put back as they were before the
step); ``max_nonfinite`` consecutive ones stop the run with :class:`NonFiniteLossError`, leaving the
last checkpoint as it was.

Exact resume: the checkpoint holds the RNG states of every process, the counters (epoch,
batches consumed in it, iteration), the method state (memories, pseudo labels) and the
optimizer; the epoch's batch order is a function of (seed, epoch), so a resumed run skips the
consumed batches and continues bit-for-bit like an uninterrupted one. On CUDA that needs
``solver.deterministic``: the fast default settings use atomics (index_add, scatter,
cuDNN's non-deterministic algorithms), so two runs of the same seed already differ.

Several processes (DDP): the model is moved to the device, optionally converted to
SyncBatchNorm (``solver.sync_bn``, CUDA) and to channels_last *before* it is wrapped, so the
gradient buckets are laid out like the parameters. The learning rate and an iteration warm-up
follow ``solver.lr_scaling`` (``engine.schedule.scale_for_batch``): with "linear", lr x k and
warm-up / k for a global batch k times the reference batch.
"""

from __future__ import annotations

import itertools
import os
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from personsearch.comm import DistContext, gather_pending, unwrap_model
from personsearch.config import SolverConfig, TrainConfig
from personsearch.data.loader import finish_images
from personsearch.engine import checkpoint as ckpt
from personsearch.engine.hooks import (
    CheckpointHook,
    EvalHook,
    Hook,
    LoggingHook,
    LRScheduleHook,
    MethodHook,
)
from personsearch.engine.logging import MetricsWriter
from personsearch.engine.schedule import LRSchedule, scale_for_batch, warmup_iterations
from personsearch.errors import CheckpointError, ConfigError, PersonSearchError
from personsearch.methods.base import Method, StepOutput
from personsearch.methods.context import MethodContext


class NonFiniteLossError(PersonSearchError):
    """Too many consecutive non-finite losses: training stopped."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA). Determinism settings are separate
    (:func:`configure_backends`)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_backends(device: torch.device, deterministic: bool) -> dict[str, Any]:
    """Speed versus bit-exactness on CUDA (nothing changes on the CPU, whose kernels used here
    are deterministic already). Returns the settings applied (logged by the trainer).

    deterministic=True: cuDNN deterministic algorithms, no TF32 convolutions,
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a deterministic
    CUDA kernel warn) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set. Needed for bit-exact
    resume on CUDA.
    deterministic=False (default): cuDNN picks its fastest algorithms and convolutions may use
    TF32. Matmuls stay full float32 (``torch.backends.cuda.matmul`` untouched): the memory
    similarities and loss heads are matmuls and must not lose precision. ``cudnn.benchmark``
    stays off: training images change size every batch and each new shape would be
    benchmarked again.
    """
    if device.type != "cuda":
        return {}
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return {"cudnn_deterministic": deterministic, "cudnn_tf32": not deterministic,
            "cudnn_benchmark": False}


def prepare_module(model: nn.Module, device: torch.device, solver: SolverConfig,
                   distributed: bool) -> nn.Module:
    """The model as DDP must receive it: on ``device``, BatchNorms turned into SyncBatchNorm
    when ``solver.sync_bn`` and several processes run, then channels_last parameters — all
    before wrapping, so DDP's gradient buckets take the final parameter layout."""
    model.to(device)
    if solver.sync_bn and distributed:
        if device.type not in ("cuda", "xpu"):
            raise ConfigError("solver.sync_bn: SyncBatchNorm needs CUDA devices (this run uses "
                              f"{device.type}); set solver.sync_bn=false")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if solver.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def move_to_device(value: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        return value
    if isinstance(value, dict):
        return {k: move_to_device(v, device, channels_last and k == "images") for k, v in value.items()}
    if isinstance(value, list):
        return [move_to_device(v, device) for v in value]
    return value


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.SGD:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PersonSearchError("the model has no trainable parameters")
    return torch.optim.SGD(
        params, lr=solver.lr, momentum=solver.momentum, weight_decay=solver.weight_decay
    )


class Trainer:
    """Trains ``model`` with ``method`` on the batches of ``loader``.

    Args:
        model: the (unwrapped) model; moved to ``device`` and wrapped in DDP when
            ``dist.world_size > 1``.
        method: a :class:`~personsearch.methods.base.Method`.
        loader: epoch batch source with ``len(loader)`` batches per epoch and
            ``batches(epoch, start_batch)`` (``personsearch.data.loader.TrainLoader``).
        solver, train: the config sections.
        context: what the method receives in ``setup`` / ``restore``
            (:class:`~personsearch.methods.context.MethodContext`); its ``device`` and ``dist``
            (process group) are the trainer's too.
        config: the whole config as a plain dict (stored in checkpoints).
        model_kwargs: the build_model kwargs (stored in checkpoints for ``load_model``).
        evaluate: optional ``(model, epoch) -> metrics`` for periodic evaluation.
        hooks: extra hooks, run after the default ones.
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        loader: Any,
        *,
        solver: SolverConfig,
        train: TrainConfig,
        context: MethodContext,
        config: dict | None = None,
        model_kwargs: dict | None = None,
        evaluate: Callable[[nn.Module, int], dict] | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.context = context
        self.dist: DistContext = context.dist
        self.device = torch.device(context.device)
        self.solver = solver
        self.train_cfg = train
        self.method = method
        self.loader = loader
        self.config = config or {}
        self.model_kwargs = model_kwargs or {}
        self.epochs = solver.epochs
        # solver.iters_per_epoch: a short epoch of the first batches of each epoch's order
        self.iters_per_epoch = min(len(loader), solver.iters_per_epoch or len(loader))
        if hasattr(loader, "use_device"):
            loader.use_device(self.device)  # pinned host batches on CUDA
        if self.iters_per_epoch <= 0:
            raise PersonSearchError("the training loader yields no batches")

        self.backend_settings = configure_backends(self.device, solver.deterministic)
        model = prepare_module(model, self.device, solver, self.dist.enabled)
        self.module = model
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model: nn.Module = nn.parallel.DistributedDataParallel(
                model, device_ids=device_ids,
                find_unused_parameters=train.find_unused_parameters,
            )
        else:
            self.model = model
        self.optimizer = build_optimizer(model, solver)
        # fp16: scaled losses (the scaler's state is checkpointed); disabled = plain backward
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=solver.fp16)
        per_process_batch = int(getattr(loader, "batch_size", 0) or 0)
        # warm-up in epochs: already right for any world size (epochs shrink with it)
        warmup = warmup_iterations(solver.warmup_iters, solver.warmup_epochs, self.iters_per_epoch)
        self.lr = solver.lr
        if per_process_batch > 0:  # a batch source that does not say its batch size: no scaling
            lr_rule = solver.lr_scaling
            scaled_lr, scaled_warmup = scale_for_batch(
                solver.lr, warmup, per_process_batch * self.dist.world_size,
                solver.reference_batch_size or per_process_batch, lr_rule)
            self.lr = scaled_lr
            if solver.warmup_iters is not None:
                warmup = scaled_warmup
        self.schedule = LRSchedule(
            base_lr=self.lr,
            warmup_iters=warmup,
            warmup_factor=solver.warmup_factor,
            lr_steps=tuple(solver.lr_steps),
            gamma=solver.gamma,
        )
        self.out_dir = Path(train.out_dir)
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.metrics = MetricsWriter(self.out_dir / "metrics.jsonl", enabled=self.dist.is_main)

        # Position and running state (all restored on resume).
        self.epoch = 0
        self.batch_in_epoch = 0
        self.iteration = 0
        self.epoch_started = False
        self.epoch_complete = False
        self.nonfinite_count = 0
        self.loss_sums: dict[str, float] = {}
        self.loss_count = 0
        self.epoch_metrics: dict[str, Any] = {}
        self.eval_metrics: dict[str, Any] = {}
        self.current_lr = self.schedule.lr(0, 0)
        self.last_step: dict[str, Any] = {}
        self.resume_state: dict | None = None
        self.last_checkpoint: Path | None = None

        self.hooks: list[Hook] = [MethodHook(), LRScheduleHook()]
        if evaluate is not None:
            self.hooks.append(EvalHook(evaluate, train.eval_every_epochs))
        self.hooks += [
            LoggingHook(train.log_every, train.progress),
            CheckpointHook(train.checkpoint_every_iters, train.keep_epoch_checkpoints),
            *hooks,
        ]

    # ------------------------------------------------------------------ helpers
    @property
    def last_checkpoint_path(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    def log(self, record: dict[str, Any]) -> None:
        self.metrics.write({"epoch": self.epoch, "iteration": self.iteration, **record})

    def _call(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)

    def _autocast(self):
        if self.solver.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.solver.fp16:
            return torch.autocast(self.device.type, dtype=torch.float16)
        return nullcontext()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The checkpoint state (collective: every process must call it)."""
        rng = self.dist.all_gather_object(ckpt.capture_rng_state())
        if self.epoch_complete:
            epoch, batch, started = self.epoch + 1, 0, False
        else:
            epoch, batch, started = self.epoch, self.batch_in_epoch, self.epoch_started
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "model": self.module.state_dict(),
            "model_kwargs": self.model_kwargs,
            "method": self.method.name,
            "method_state": self.method.state_dict(),
            "config": self.config,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "epoch": epoch,
            "batch_in_epoch": batch,
            "epoch_started": started,
            "iteration": self.iteration,
            "nonfinite_count": self.nonfinite_count,
            "loss_sums": {} if self.epoch_complete else dict(self.loss_sums),
            "loss_count": 0 if self.epoch_complete else self.loss_count,
            "epoch_metrics": {} if self.epoch_complete else dict(self.epoch_metrics),
            "rng": rng,
            "data_order": {"seed": int(self.train_cfg.seed)},
            "world_size": self.dist.world_size,
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }

    def save_checkpoint(self, extra_name: str | None = None) -> Path:
        state = self.state_dict()
        path = self.last_checkpoint_path
        if self.dist.is_main:
            ckpt.save_checkpoint(path, state)
            if extra_name:
                ckpt.save_checkpoint(self.checkpoint_dir / extra_name, state)
        self.dist.barrier()
        self.last_checkpoint = path
        return path

    def load_resume_state(self, path: str | Path | None = None) -> dict:
        """Load a checkpoint to continue from (before ``train``)."""
        path = Path(path) if path is not None else self.last_checkpoint_path
        state = ckpt.load_checkpoint(path)
        for key in ("model", "optimizer", "method_state", "epoch", "iteration", "rng"):
            if key not in state:
                raise CheckpointError(f"{path}: not a training checkpoint (no {key!r})")
        if state.get("method") != self.method.name:
            raise CheckpointError(
                f"{path}: written by method {state.get('method')!r}, not {self.method.name!r}"
            )
        try:
            self.module.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{path}: weights do not fit the model ({error})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.epoch_started = bool(state["epoch_started"])
        self.iteration = int(state["iteration"])
        self.nonfinite_count = int(state.get("nonfinite_count", 0))
        self.loss_sums = {k: float(v) for k, v in state.get("loss_sums", {}).items()}
        self.loss_count = int(state.get("loss_count", 0))
        self.epoch_metrics = dict(state.get("epoch_metrics", {}))
        rng = state["rng"]
        if len(rng) != self.dist.world_size:
            raise CheckpointError(
                f"{path}: written by {len(rng)} process(es); resume with the same number "
                f"(now {self.dist.world_size}) to continue exactly"
            )
        ckpt.restore_rng_state(rng[self.dist.rank])
        self.resume_state = state
        self.last_checkpoint = path
        self.metrics.rewind(self.epoch, self.iteration, self.epoch_started)
        return state

    # ------------------------------------------------------------------ training
    def train(self, resume: bool | str | Path = False) -> dict[str, Any]:
        """Run (or continue, with ``resume``: True = ``<out>/checkpoints/last.pt``, or a path)
        until ``solver.epochs``. Returns {"epoch", "iteration", "checkpoint", "eval"}."""
        if resume:
            self.load_resume_state(None if resume is True else resume)
        else:
            seed_everything(self.train_cfg.seed + self.dist.rank)
            self.metrics.reset()
        self.model.train()
        try:
            self._call("before_train")
            while self.epoch < self.epochs:
                self._call("before_epoch")
                remaining = max(0, self.iters_per_epoch - self.batch_in_epoch)
                batches = self.loader.batches(self.epoch, self.batch_in_epoch)
                for batch in itertools.islice(batches, remaining):
                    self._call("before_step")
                    self._step(batch)
                    self._call("after_step")
                self.epoch_complete = True
                self._call("after_epoch")
                self.epoch += 1
                self.batch_in_epoch = 0
                self.epoch_started = False
                self.epoch_complete = False
                self.loss_sums, self.loss_count, self.epoch_metrics = {}, 0, {}
            self._call("after_train")
        finally:
            self._call("close")
        return {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "eval": self.eval_metrics,
        }

    def _unused_parameters_error(self, error: RuntimeError) -> None:
        """DDP (find_unused_parameters off) fails in the step after one where some trainable
        parameter got no gradient: re-raise that as a config error naming the setting."""
        if self.dist.enabled and "find_unused_parameters" in str(error):
            raise ConfigError(
                "train.find_unused_parameters: some trainable parameters get no gradient in "
                f"method {self.method.name!r}'s step; set train.find_unused_parameters=true"
            ) from error

    def _backward(self, total: torch.Tensor) -> None:
        """Backward of the weighted loss (scaled with fp16)."""
        try:
            self.scaler.scale(total).backward() if self.scaler.is_enabled() else total.backward()
        except RuntimeError as error:
            self._unused_parameters_error(error)
            raise

    def _step(self, batch: dict) -> None:
        batch = move_to_device(batch, self.device, self.solver.channels_last)
        if "raw_images" in batch:  # uint8 images: float, resize, normalise on the device
            batch = finish_images(batch)
            if self.solver.channels_last:
                batch["images"] = batch["images"].contiguous(memory_format=torch.channels_last)
        # Buffers (BatchNorm running stats) change in the forward pass: keep a copy to put back
        # if the step turns out non-finite, so a NaN batch cannot poison them.
        buffers_before = [b.detach().clone() for b in self.module.buffers()]
        try:
            with self._autocast():
                output: StepOutput = self.method.training_step(self.model, batch, self.epoch)
        except RuntimeError as error:
            self._unused_parameters_error(error)
            raise
        weights = self.method.loss_weights
        losses = {name: loss.float() for name, loss in output.losses.items()}
        if not losses:
            raise PersonSearchError(f"method {self.method.name!r} returned no losses")
        total = sum(loss * float(weights.get(name, 1.0)) for name, loss in losses.items())
        loss_values = {name: float(loss.detach()) for name, loss in losses.items()}
        total_value = float(total.detach())
        finite = self.dist.all_reduce_min_bool(bool(np.isfinite(total_value)))

        grad_norm = None
        scaler_skip = False
        if finite:
            self.optimizer.zero_grad(set_to_none=True)
            self._backward(total)
            if self.scaler.is_enabled():
                self.scaler.unscale_(self.optimizer)  # true gradients for clipping and the norm
            if self.solver.clip_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in self.module.parameters() if p.grad is not None],
                    self.solver.clip_grad_norm,
                )
                grad_norm = float(norm)
                # DDP averages gradients before this point, so every rank sees the same norm.
                finite = bool(np.isfinite(grad_norm))
            if self.scaler.is_enabled() and not finite:
                # fp16 overflow of the *scaled* gradients (the loss was finite): the scaler
                # lowers its scale and the step is skipped; not a non-finite loss
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                scaler_skip, finite = True, True
        self.iteration += 1
        self.batch_in_epoch += 1
        if scaler_skip:
            self.log({"type": "grad_scaler_skip", "scale": float(self.scaler.get_scale()),
                      **loss_values})
            self.last_step = {"losses": loss_values, "total": total_value, "metrics": {},
                              "grad_norm": grad_norm, "finite": True, "skipped": True}
            return
        if finite:
            if self.scaler.is_enabled():
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            pending = gather_pending(output.pending, self.dist)
            with torch.no_grad():
                self.method.after_step(pending)
            self.nonfinite_count = 0
            for name, value in loss_values.items():
                self.loss_sums[name] = self.loss_sums.get(name, 0.0) + value
            self.loss_sums["total"] = self.loss_sums.get("total", 0.0) + total_value
            self.loss_count += 1
        else:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, saved in zip(self.module.buffers(), buffers_before):
                    buffer.copy_(saved)
            self.nonfinite_count += 1
            self.log({"type": "nonfinite", **loss_values, "total": total_value,
                      "grad_norm": grad_norm, "consecutive": self.nonfinite_count})
            if self.nonfinite_count >= self.train_cfg.max_nonfinite:
                last = self.last_checkpoint_path
                where = (
                    f"the last good checkpoint is {last}" if last.is_file()
                    else "no checkpoint was written yet"
                )
                raise NonFiniteLossError(
                    f"{self.nonfinite_count} consecutive non-finite losses (epoch {self.epoch}, "
                    f"iteration {self.iteration}; last losses "
                    f"{', '.join(f'{k}={v}' for k, v in loss_values.items())}); training "
                    f"stopped, {where} (resume with --resume after fixing the cause, e.g. a "
                    f"lower solver.lr)"
                )
        self.last_step = {
            "losses": loss_values,
            "total": total_value,
            "metrics": {k: float(v) for k, v in output.metrics.items()},
            "grad_norm": grad_norm,
            "finite": finite,
        }
