"""Trainer: step loop, loss weighting, non-finite handling, exact kill-and-resume."""

from __future__ import annotations

import json

import pytest
import torch

from toys import (
    ToyMethod,
    ToyModel,
    make_loader,
    solver,
    train_cfg,
    trained_state,
    write_split,
)
from personsearch.engine.checkpoint import load_checkpoint
from personsearch.engine.hooks import Hook
from personsearch.engine.trainer import NonFiniteLossError, Trainer
from personsearch.methods.context import MethodContext


class SimulatedKill(Exception):
    pass


class KillAt(Hook):
    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self, trainer) -> None:
        if trainer.iteration == self.iteration:
            raise SimulatedKill


class RecordParams(Hook):
    """Snapshots of the parameters after every step."""

    def __init__(self) -> None:
        self.snapshots = []

    def after_step(self, trainer) -> None:
        self.snapshots.append(trained_state(trainer))


def make_trainer(records, out_dir, hooks=(), method=None, solver_kw=None, train_kw=None):
    torch.manual_seed(0)
    model = ToyModel()
    return Trainer(
        model, method or ToyMethod(), make_loader(records),
        solver=solver(**(solver_kw or {})), train=train_cfg(out_dir, **(train_kw or {})),
        context=MethodContext(records), config={"note": "test"},
        model_kwargs={"backbone": "toy"}, hooks=hooks,
    )


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("split"))


WALL_CLOCK_KEYS = ("it_per_s", "seconds", "seconds_method_setup", "step_seconds", "steps_timed",
                   "cpu_seconds", "cpu_seconds_method_setup", "step_cpu_seconds")


def iter_records(path):
    """The metrics log without its wall-clock timings (and the count of steps timed, which
    restarts at a resume)."""
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    for line in lines:
        for key in WALL_CLOCK_KEYS:
            line.pop(key, None)
    return lines


def test_kill_and_resume_gives_identical_weights(records, tmp_path):
    # 7 images, batch 2 -> 4 iterations per epoch, 3 epochs = 12 iterations.
    full = make_trainer(records, tmp_path / "full")
    result = full.train()
    assert result["iteration"] == 12 and result["epoch"] == 3
    expected = trained_state(full)

    killed = make_trainer(records, tmp_path / "killed", hooks=[KillAt(7)])
    with pytest.raises(SimulatedKill):
        killed.train()
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    # checkpoint every 3 iterations: the last one is mid-epoch 1, after 2 of its batches
    assert (state["iteration"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 2)

    resumed = make_trainer(records, tmp_path / "killed")
    resumed.train(resume=True)
    got = trained_state(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert torch.equal(resumed.method.memory, full.method.memory)
    assert torch.equal(resumed.method.labels, full.method.labels)
    assert resumed.optimizer.state_dict()["state"].keys() == full.optimizer.state_dict()["state"].keys()
    # the metrics log of the resumed run is the uninterrupted one's
    assert iter_records(tmp_path / "killed" / "metrics.jsonl") == iter_records(
        tmp_path / "full" / "metrics.jsonl"
    )


def test_resume_at_epoch_boundary(records, tmp_path):
    full = make_trainer(records, tmp_path / "full", train_kw={"checkpoint_every_iters": 0})
    full.train()
    killed = make_trainer(records, tmp_path / "k", hooks=[KillAt(10)],
                          train_kw={"checkpoint_every_iters": 0})
    with pytest.raises(SimulatedKill):
        killed.train()
    state = load_checkpoint(tmp_path / "k" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["epoch_started"]) == (2, 0, False)
    assert (tmp_path / "k" / "checkpoints" / "epoch_002.pt").is_file()
    resumed = make_trainer(records, tmp_path / "k", train_kw={"checkpoint_every_iters": 0})
    resumed.train(resume=True)
    for name, value in trained_state(full).items():
        assert torch.equal(trained_state(resumed)[name], value), name


def test_loss_weights_and_lr_logged(records, tmp_path):
    trainer = make_trainer(records, tmp_path, solver_kw={"epochs": 1})
    trainer.train()
    lines = iter_records(tmp_path / "metrics.jsonl")
    steps = [l for l in lines if l["type"] == "iter"]
    assert len(steps) == 4
    for step in steps:
        assert step["total"] == pytest.approx(2.0 * step["loss_mem"] + 0.5 * step["loss_obj"], rel=1e-5)
    # warm-up over 3 iterations from 0.1: lr = 0.05 * (0.1 + 0.9 * i / 3)
    assert [s["lr"] for s in steps] == pytest.approx([0.005, 0.02, 0.035, 0.05])
    assert [l["type"] for l in lines][0] == "epoch_start"
    epoch = [l for l in lines if l["type"] == "epoch"][0]
    assert "mean/total" in epoch and "num_clusters" in epoch


def test_single_nonfinite_loss_skips_the_step(records, tmp_path):
    recorder = RecordParams()
    trainer = make_trainer(records, tmp_path, hooks=[recorder], method=ToyMethod(nan_at=(2,)),
                           solver_kw={"epochs": 1})
    trainer.train()
    lines = iter_records(tmp_path / "metrics.jsonl")
    skipped = [l for l in lines if l["type"] == "nonfinite"]
    assert len(skipped) == 1 and skipped[0]["iteration"] == 3
    # the step at iteration 3 (third call) left the weights and BN statistics as they were
    for name, value in recorder.snapshots[1].items():
        assert torch.equal(recorder.snapshots[2][name], value)
    assert all(torch.isfinite(v).all() for v in recorder.snapshots[-1].values() if v.is_floating_point())
    assert trainer.nonfinite_count == 0


def test_consecutive_nonfinite_losses_stop_with_last_good_checkpoint(records, tmp_path):
    method = ToyMethod(nan_at=tuple(range(4, 100)))
    recorder = RecordParams()
    trainer = make_trainer(records, tmp_path, hooks=[recorder], method=method,
                           train_kw={"max_nonfinite": 3, "checkpoint_every_iters": 2})
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses") as info:
        trainer.train()
    assert "last.pt" in str(info.value)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    # calls 0-3 were good, 4, 5, 6 non-finite: stop at iteration 7; last checkpoint at 6 holds
    # the weights of the last good step (iteration 4)
    assert state["iteration"] == 6
    for name, value in recorder.snapshots[3].items():
        assert torch.equal(state["model"][name], value), name
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


class RecordingMethod(ToyMethod):
    """Records whether autocast was on and the memory format of the images."""

    def training_step(self, model, batch, epoch):
        self.seen = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                     batch["images"].is_contiguous(memory_format=torch.channels_last))
        return super().training_step(model, batch, epoch)


def test_bf16_autocast_and_channels_last(records, tmp_path):
    method = RecordingMethod()
    trainer = make_trainer(records, tmp_path, method=method,
                           solver_kw={"epochs": 1, "bf16": True, "channels_last": True})
    before = trained_state(trainer)
    trainer.train()
    assert method.seen == (True, torch.bfloat16, True)
    assert trainer.module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    after = trained_state(trainer)
    assert not torch.equal(after["conv.weight"], before["conv.weight"])
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    plain = RecordingMethod()
    make_trainer(records, tmp_path / "plain", method=plain, solver_kw={"epochs": 1}).train()
    assert plain.seen[0] is False and plain.seen[2] is False


def test_gradient_clipping_bounds_the_norm(records, tmp_path):
    class Clipped(Hook):
        def __init__(self):
            self.norms = []

        def after_step(self, trainer):
            grads = [p.grad for p in trainer.module.parameters() if p.grad is not None]
            self.norms.append((trainer.last_step["grad_norm"],
                               float(torch.linalg.vector_norm(torch.stack(
                                   [torch.linalg.vector_norm(g) for g in grads])))))

    hook = Clipped()
    make_trainer(records, tmp_path, hooks=[hook],
                 solver_kw={"epochs": 1, "clip_grad_norm": 1e-3}).train()
    for before_clip, after_clip in hook.norms:
        assert before_clip > 1e-3  # the raw norm is logged ...
        assert after_clip == pytest.approx(1e-3, rel=1e-3)  # ... and the gradient is clipped


def test_periodic_evaluation_hook(records, tmp_path):
    calls = []

    def evaluate(model, epoch):
        calls.append((epoch, model.training, torch.is_grad_enabled()))
        return {"mAP": 0.1 * (epoch + 1)}

    torch.manual_seed(0)
    trainer = Trainer(
        ToyModel(), ToyMethod(), make_loader(records), solver=solver(epochs=3),
        train=train_cfg(tmp_path, eval_every_epochs=2), context=MethodContext(records),
        evaluate=evaluate,
    )
    result = trainer.train()
    # every 2 epochs (after epoch index 1) and after the last one (index 2)
    assert calls == [(1, False, False), (2, False, False)]
    assert result["eval"] == {"mAP": pytest.approx(0.3)}
    assert trainer.module.training
    epochs = [l for l in iter_records(tmp_path / "metrics.jsonl") if l["type"] == "epoch"]
    assert "eval/mAP" not in epochs[0] and epochs[1]["eval/mAP"] == pytest.approx(0.2)


def test_iters_per_epoch_shortens_every_epoch_and_resumes_inside_it(records, tmp_path):
    # 7 images, batch 2 -> 4 batches per epoch; capped at 3: 3 epochs = 9 iterations.
    short = {"iters_per_epoch": 3}
    full = make_trainer(records, tmp_path / "full", solver_kw=short,
                        train_kw={"checkpoint_every_iters": 2})
    result = full.train()
    assert result["iteration"] == 9 and result["epoch"] == 3
    assert full.iters_per_epoch == 3
    lines = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    epochs = [l for l in lines if l["type"] == "epoch"]
    assert [e["steps_timed"] for e in epochs] == [3, 3, 3]
    assert all(e["step_seconds"] > 0 and e["step_cpu_seconds"] > 0 for e in epochs)
    starts = [l for l in lines if l["type"] == "epoch_start"]
    # setup (memory init) is timed once, with the first epoch's start
    assert "seconds_method_setup" in starts[0] and all("seconds_method_setup" not in s
                                                        for s in starts[1:])
    assert "cpu_seconds_method_setup" in starts[0]
    assert all(s["seconds"] >= 0 and s["cpu_seconds"] >= 0 for s in starts)
    # the first 3 of each epoch's 4 batches: the same as an uncapped run's first 3 steps
    uncapped = make_trainer(records, tmp_path / "uncapped", hooks=[KillAt(3)])
    with pytest.raises(SimulatedKill):
        uncapped.train()
    capped_steps = [l for l in iter_records(tmp_path / "full" / "metrics.jsonl") if l["type"] == "iter"]
    uncapped_steps = [l for l in iter_records(tmp_path / "uncapped" / "metrics.jsonl")
                      if l["type"] == "iter"]
    assert capped_steps[:3] == uncapped_steps[:3]

    # killed after iteration 5 (epoch 1, batch 2 of 3; checkpoint at iteration 4) and resumed
    killed = make_trainer(records, tmp_path / "killed", hooks=[KillAt(5)], solver_kw=short,
                          train_kw={"checkpoint_every_iters": 2})
    with pytest.raises(SimulatedKill):
        killed.train()
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (state["iteration"], state["epoch"], state["batch_in_epoch"]) == (4, 1, 1)
    resumed = make_trainer(records, tmp_path / "killed", solver_kw=short,
                           train_kw={"checkpoint_every_iters": 2})
    assert resumed.train(resume=True)["iteration"] == 9
    for name, value in trained_state(full).items():
        assert torch.equal(trained_state(resumed)[name], value), name


def test_iters_per_epoch_must_be_positive():
    from personsearch.config import config_from_dict
    from personsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="solver.iters_per_epoch"):
        config_from_dict({"solver": {"iters_per_epoch": 0}})
    assert config_from_dict({"solver": {"iters_per_epoch": 5}}).solver.iters_per_epoch == 5
