"""Trainer hooks. Each hook sees the trainer and may read its state (``epoch``,
``batch_in_epoch``, ``iteration``, ``last_step``, ``epoch_metrics``) and call its helpers.

Order of the default hooks (``Trainer.default_hooks``): method (setup / pseudo labels), lr
schedule, evaluation, logging, checkpoint — so an epoch's evaluation is logged before the
epoch-end checkpoint is written, and every log line of a step precedes its checkpoint.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from personsearch.engine.trainer import Trainer

EvalFn = Callable[[nn.Module, int], dict[str, float]]


class Hook:
    def before_train(self, trainer: "Trainer") -> None: ...
    def before_epoch(self, trainer: "Trainer") -> None: ...
    def before_step(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer") -> None: ...
    def after_epoch(self, trainer: "Trainer") -> None: ...
    def after_train(self, trainer: "Trainer") -> None: ...
    def close(self, trainer: "Trainer") -> None:
        """Always called when ``train`` returns or raises (release resources)."""


class MethodHook(Hook):
    """``method.setup`` (memory initialisation) before training — or ``method.restore`` when
    resuming — and ``method.on_epoch_start`` (pseudo labels) at the start of every epoch not
    already started before a resume. The epoch-start metrics are logged at once, with the
    seconds they took and, on the first epoch of a fresh start, the seconds of ``setup``."""

    setup_seconds: tuple[float, float] | None = None  # wall, process CPU

    def before_train(self, trainer: "Trainer") -> None:
        model = trainer.module
        clock, cpu_clock = time.perf_counter(), time.process_time()
        resumed = trainer.resume_state is not None
        if resumed:
            trainer.method.restore(model, trainer.context, trainer.resume_state["method_state"])
        else:
            trainer.method.setup(model, trainer.context)
        model.train()
        # logged with the first epoch's start (a resumed run's restore is not timed, so that
        # its metrics log stays the uninterrupted run's)
        self.setup_seconds = None if resumed else (time.perf_counter() - clock,
                                                   time.process_time() - cpu_clock)

    def before_epoch(self, trainer: "Trainer") -> None:
        if trainer.epoch_started:
            return
        clock, cpu_clock = time.perf_counter(), time.process_time()
        metrics = trainer.method.on_epoch_start(trainer.module, trainer.epoch) or {}
        seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu_clock
        trainer.module.train()
        trainer.epoch_started = True
        trainer.epoch_metrics.update({k: float(v) for k, v in metrics.items()})
        # wall seconds, and CPU seconds of this process (all its threads; steadier than wall
        # time on a shared machine)
        timing = {"seconds": seconds, "cpu_seconds": cpu_seconds}
        if self.setup_seconds is not None:
            timing["seconds_method_setup"], timing["cpu_seconds_method_setup"] = self.setup_seconds
            self.setup_seconds = None
        trainer.log({"type": "epoch_start", **{k: float(v) for k, v in metrics.items()},
                     **timing})


class PseudoLabelDiagnosticsHook(Hook):
    """After the epoch's pseudo labels are made, compare them with the true identities of the
    training boxes (``method.pseudo_label_diagnostics(slot_true_ids)``; pairwise precision and
    recall) and log them. Diagnostics only: the ids stay in this hook, the method gets them
    for the one call and keeps nothing. Main process only."""

    def __init__(self, slot_true_ids) -> None:
        self.slot_true_ids = slot_true_ids

    def before_epoch(self, trainer: "Trainer") -> None:
        report = getattr(trainer.method, "pseudo_label_diagnostics", None)
        if report is None or not trainer.dist.is_main or trainer.batch_in_epoch > 0:
            return
        clock, cpu_clock = time.perf_counter(), time.process_time()
        metrics = {f"diag/{k}": float(v) for k, v in report(self.slot_true_ids).items()}
        trainer.epoch_metrics.update(metrics)
        trainer.log({"type": "pseudo_label_diagnostics", **metrics,
                     "seconds": time.perf_counter() - clock,
                     "cpu_seconds": time.process_time() - cpu_clock})


class LRScheduleHook(Hook):
    def before_step(self, trainer: "Trainer") -> None:
        trainer.current_lr = trainer.schedule.apply(trainer.optimizer, trainer.iteration, trainer.epoch)


class EvalHook(Hook):
    """Calls ``evaluate(model, epoch) -> metrics`` (model unwrapped, eval mode, no grad) on the
    main process every ``every_epochs`` epochs and after the last epoch."""

    def __init__(self, evaluate: EvalFn, every_epochs: int) -> None:
        self.evaluate = evaluate
        self.every_epochs = every_epochs

    def after_epoch(self, trainer: "Trainer") -> None:
        done = trainer.epoch + 1
        last = done == trainer.epochs
        if not (last or (self.every_epochs > 0 and done % self.every_epochs == 0)):
            return
        metrics: dict[str, Any] = {}
        if trainer.dist.is_main:
            model = trainer.module
            model.eval()
            with torch.no_grad():
                metrics = dict(self.evaluate(model, trainer.epoch) or {})
            model.train()
        metrics = trainer.dist.broadcast_object(metrics)
        trainer.epoch_metrics.update({f"eval/{k}": v for k, v in metrics.items()})
        trainer.eval_metrics = metrics
        trainer.log({"type": "eval", **metrics})


class LoggingHook(Hook):
    """Per-step JSONL record every ``log_every`` iterations, the tqdm bar, and the epoch
    summary (mean losses, method and evaluation metrics)."""

    def __init__(self, log_every: int, progress: bool) -> None:
        from personsearch.engine.logging import ProgressBar

        self.log_every = log_every
        self.bar = ProgressBar(progress)
        self.window_start = time.perf_counter()
        self.window_iters = 0
        self.step_start = self.window_start
        self.step_cpu_start = time.process_time()
        self.step_seconds = 0.0  # this process's time in training steps of the epoch
        self.step_cpu_seconds = 0.0
        self.steps = 0

    def before_epoch(self, trainer: "Trainer") -> None:
        self.bar.enabled = self.bar.enabled and trainer.dist.is_main
        self.bar.start(trainer.epoch, trainer.iters_per_epoch, trainer.batch_in_epoch)
        self.window_start = time.perf_counter()
        self.window_iters = 0
        self.step_seconds, self.step_cpu_seconds, self.steps = 0.0, 0.0, 0

    def before_step(self, trainer: "Trainer") -> None:
        self.step_start, self.step_cpu_start = time.perf_counter(), time.process_time()

    def after_step(self, trainer: "Trainer") -> None:
        step = trainer.last_step
        self.step_seconds += time.perf_counter() - self.step_start
        self.step_cpu_seconds += time.process_time() - self.step_cpu_start
        self.steps += 1
        self.window_iters += 1
        postfix = {"total": step["total"], **step["losses"]}
        self.bar.update(postfix)
        if trainer.iteration % self.log_every == 0:
            elapsed = time.perf_counter() - self.window_start
            record = {
                "type": "iter",
                "lr": trainer.current_lr,
                **step["losses"],
                "total": step["total"],
                **step["metrics"],
                "it_per_s": self.window_iters / elapsed if elapsed > 0 else None,
            }
            if step.get("grad_norm") is not None:
                record["grad_norm"] = step["grad_norm"]
            trainer.log(record)
            self.window_start = time.perf_counter()
            self.window_iters = 0

    def after_epoch(self, trainer: "Trainer") -> None:
        self.bar.close()
        means = {
            f"mean/{name}": total / max(1, trainer.loss_count)
            for name, total in trainer.loss_sums.items()
        }
        # step_seconds / steps_timed: the steps this process ran in the epoch (after a resume,
        # only those since the resume)
        trainer.log({"type": "epoch", **means, **trainer.epoch_metrics,
                     "step_seconds": self.step_seconds, "step_cpu_seconds": self.step_cpu_seconds,
                     "steps_timed": self.steps})

    def close(self, trainer: "Trainer") -> None:
        self.bar.close()


class CheckpointHook(Hook):
    """``last.pt`` every ``every_iters`` iterations (0 = off) and at the end of every epoch,
    plus ``epoch_NNN.pt`` (1-based epoch number) when ``keep_epochs``."""

    def __init__(self, every_iters: int, keep_epochs: bool) -> None:
        self.every_iters = every_iters
        self.keep_epochs = keep_epochs

    def after_step(self, trainer: "Trainer") -> None:
        if self.every_iters > 0 and trainer.iteration % self.every_iters == 0:
            trainer.save_checkpoint()

    def after_epoch(self, trainer: "Trainer") -> None:
        # trainer.epoch_complete is set: the checkpoint records the next epoch's start.
        extra = f"epoch_{trainer.epoch + 1:03d}.pt" if self.keep_epochs else None
        trainer.save_checkpoint(extra_name=extra)
