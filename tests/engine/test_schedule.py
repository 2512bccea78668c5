"""Learning-rate schedule values computed by hand."""

from __future__ import annotations

import pytest
import torch

from personsearch.engine.schedule import LRSchedule, warmup_iterations


def test_seqnet_schedule_by_hand():
    # lr 0.003, warm-up over 100 iterations from 1/1000, x0.1 from epoch 16
    schedule = LRSchedule(0.003, warmup_iters=100, warmup_factor=0.001, lr_steps=(16,), gamma=0.1)
    assert schedule.lr(0, 0) == pytest.approx(0.003 * 0.001)
    assert schedule.lr(50, 0) == pytest.approx(0.003 * (0.001 * 0.5 + 0.5))
    assert schedule.lr(99, 0) == pytest.approx(0.003 * (0.001 * 0.01 + 0.99))
    assert schedule.lr(100, 1) == pytest.approx(0.003)
    assert schedule.lr(5000, 15) == pytest.approx(0.003)
    assert schedule.lr(5001, 16) == pytest.approx(0.0003)
    assert schedule.lr(9000, 19) == pytest.approx(0.0003)


def test_cgps_schedule_two_steps():
    schedule = LRSchedule(0.001, warmup_iters=2242, warmup_factor=1 / 200, lr_steps=(16, 22))
    assert schedule.lr(0, 0) == pytest.approx(5e-6)
    assert schedule.lr(1121, 0) == pytest.approx(0.001 * (0.005 * 0.5 + 0.5))
    assert schedule.lr(2242, 1) == pytest.approx(0.001)
    assert schedule.lr(10**5, 21) == pytest.approx(1e-4)
    assert schedule.lr(10**5, 22) == pytest.approx(1e-5)
    assert schedule.lr(10**5, 25) == pytest.approx(1e-5)


def test_no_warmup_and_apply_sets_groups():
    schedule = LRSchedule(0.1, lr_steps=(1,), gamma=0.5)
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr_mult": 2.0}], lr=1.0)
    assert schedule.apply(optimizer, 0, 1) == pytest.approx(0.05)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.1])


def test_warmup_length_from_iters_or_epochs():
    assert warmup_iterations(2242, None, 100) == 2242
    assert warmup_iterations(None, 1.0, 3700) == 3700
    assert warmup_iterations(None, 0.5, 11) == 6
    assert warmup_iterations(None, None, 11) == 0
