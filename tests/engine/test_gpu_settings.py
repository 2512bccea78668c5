"""Trainer settings for GPUs that a CPU can check: the lr / warm-up scaling rule, fp16 with a
gradient scaler (CPU GradScaler), the determinism switch, SyncBatchNorm preparation and the
unused-parameter error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from toys import ToyMethod, ToyModel, make_loader, solver, train_cfg, write_split
from personsearch.comm import DistContext
from personsearch.config import SolverConfig
from personsearch.engine.checkpoint import load_checkpoint
from personsearch.engine.schedule import scale_for_batch
from personsearch.engine.trainer import Trainer, configure_backends, prepare_module
from personsearch.errors import ConfigError
from personsearch.methods.context import MethodContext


def test_linear_scaling_rule_hand_cases():
    # 4 processes x 5 images vs a preset tuned for 5: lr x4, 1000 warm-up iterations -> 250
    assert scale_for_batch(0.003, 1000, 20, 5, "linear") == (pytest.approx(0.012), 250)
    # factor 2, odd warm-up rounds up: the warm-up never covers fewer images
    assert scale_for_batch(0.003, 1001, 10, 5, "linear") == (pytest.approx(0.006), 501)
    assert scale_for_batch(0.003, 1000, 20, 5, "none") == (0.003, 1000)
    assert scale_for_batch(0.003, 1000, 5, 5, "linear") == (0.003, 1000)
    with pytest.raises(ValueError, match="scaling rule"):
        scale_for_batch(0.003, 10, 5, 5, "sqrt")


def test_trainer_applies_the_rule_to_its_global_batch(tmp_path):
    records = write_split(tmp_path / "split", num_images=6)
    # batch 2 per process, preset tuned for 1 image: factor 2
    trainer = Trainer(ToyModel(), ToyMethod(), make_loader(records),
                      solver=solver(lr=0.05, warmup_iters=7, reference_batch_size=1),
                      train=train_cfg(tmp_path / "a"), context=MethodContext(records))
    assert trainer.schedule.base_lr == pytest.approx(0.1) and trainer.schedule.warmup_iters == 4
    plain = Trainer(ToyModel(), ToyMethod(), make_loader(records), solver=solver(lr=0.05, warmup_iters=7),
                    train=train_cfg(tmp_path / "b"), context=MethodContext(records))
    assert plain.schedule.base_lr == 0.05 and plain.schedule.warmup_iters == 7
    # a warm-up in epochs is not rescaled (epochs already shrink with the world size)
    epochs = Trainer(ToyModel(), ToyMethod(), make_loader(records),
                     solver=solver(lr=0.05, warmup_iters=None, warmup_epochs=1.0, reference_batch_size=1),
                     train=train_cfg(tmp_path / "c"), context=MethodContext(records))
    assert epochs.schedule.base_lr == pytest.approx(0.1)
    assert epochs.schedule.warmup_iters == len(make_loader(records))


def test_fp16_training_with_the_cpu_grad_scaler(tmp_path):
    records = write_split(tmp_path / "split", num_images=5)
    trainer = Trainer(ToyModel(), ToyMethod(), make_loader(records),
                      solver=solver(epochs=1, fp16=True), train=train_cfg(tmp_path / "run"),
                      context=MethodContext(records))
    assert trainer.scaler.is_enabled()
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["grad_scaler"]["scale"] > 0
    assert SolverConfig().fp16 is False
    with pytest.raises(ConfigError, match="solver.fp16"):
        SolverConfig(bf16=True, fp16=True)


def test_determinism_switch_sets_cuda_flags_only_for_cuda():
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled())
    try:
        assert configure_backends(torch.device("cpu"), deterministic=True) == {}
        assert torch.are_deterministic_algorithms_enabled() == saved[3]
        fast = configure_backends(torch.device("cuda", 0), deterministic=False)
        assert fast == {"cudnn_deterministic": False, "cudnn_tf32": True, "cudnn_benchmark": False}
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.allow_tf32
        assert not torch.are_deterministic_algorithms_enabled()
        exact = configure_backends(torch.device("cuda", 0), deterministic=True)
        assert exact["cudnn_deterministic"] and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.allow_tf32 and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]
        torch.use_deterministic_algorithms(saved[3])


def test_prepare_module_sync_bn_needs_cuda_and_channels_last_comes_before_wrapping():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigError, match="solver.sync_bn"):
        prepare_module(model, torch.device("cpu"), SolverConfig(sync_bn=True), distributed=True)
    # one process: nothing to synchronise, the setting is ignored
    same = prepare_module(model, torch.device("cpu"), SolverConfig(sync_bn=True, channels_last=True),
                          distributed=False)
    assert isinstance(same[1], nn.BatchNorm2d)
    assert same[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_unused_parameter_failure_becomes_a_config_error(tmp_path):
    records = write_split(tmp_path / "split", num_images=3)
    trainer = Trainer(ToyModel(), ToyMethod(), make_loader(records), solver=solver(),
                      train=train_cfg(tmp_path / "run"), context=MethodContext(records))
    trainer.dist = DistContext(rank=0, world_size=2)
    ddp_message = ("Expected to have finished reduction in the prior iteration ... enable unused "
                   "parameter detection by passing the keyword argument `find_unused_parameters=True`")
    with pytest.raises(ConfigError, match="train.find_unused_parameters"):
        trainer._unused_parameters_error(RuntimeError(ddp_message))
    trainer._unused_parameters_error(RuntimeError("some other failure"))  # passes through
