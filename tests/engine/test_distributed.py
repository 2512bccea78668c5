"""Two CPU processes with gloo: gather/broadcast helpers, and a short DDP training run whose
memory banks, pseudo labels and weights must be identical on both ranks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from toys import ToyMethod, ToyModel, make_loader, solver, train_cfg, write_split
from personsearch.comm import (
    cleanup_distributed,
    gather_pending,
    init_distributed,
    LOCAL,
)
from personsearch.engine.trainer import Trainer
from personsearch.methods.context import MethodContext


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world_size: int, port: int, out_dir: str, records) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = init_distributed("cpu")
    try:
        helpers = {
            "gathered": dist.all_gather_cat(torch.full((rank + 1, 2), float(rank))),
            "gathered_bool": dist.all_gather_cat(torch.tensor([rank == 1] * (2 - rank))),
            "pending": gather_pending({"feats": torch.full((rank + 2, 3), float(rank)),
                                       "slots": torch.arange(rank + 2) + 10 * rank}, dist),
            "object": dist.broadcast_object({"from": rank}),
            "tensor": dist.broadcast_tensor(torch.full((2,), float(rank))),
            "all_true": dist.all_reduce_min_bool(rank == 0),
        }
        torch.manual_seed(0)
        method = ToyMethod()
        trainer = Trainer(
            ToyModel(), method, make_loader(records, rank=rank, world_size=world_size),
            solver=solver(epochs=2), train=train_cfg(out_dir),
            context=MethodContext(records, dist.device, dist),
            model_kwargs={"backbone": "toy"},
        )
        trainer.train()
        torch.save({
            "helpers": helpers,
            "memory": method.memory,
            "labels": method.labels,
            # parameters only: DDP syncs buffers (BN statistics) from rank 0 at the start of
            # each forward, so after the last forward they legitimately differ
            "params": {k: v.detach() for k, v in trainer.module.named_parameters()},
            "iterations": trainer.iteration,
        }, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


@pytest.mark.timeout(300)
def test_two_process_training_keeps_memories_identical(tmp_path):
    records = write_split(tmp_path / "split", num_images=7)
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    mp.spawn(worker, args=(2, free_port(), str(out_dir), records), nprocs=2, join=True)
    results = [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]

    for result in results:
        helpers = result["helpers"]
        assert torch.equal(helpers["gathered"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
        assert helpers["gathered_bool"].tolist() == [False, False, True]
        assert helpers["gathered_bool"].dtype == torch.bool
        assert helpers["pending"]["slots"].tolist() == [0, 1, 10, 11, 12]
        assert helpers["pending"]["feats"].shape == (5, 3)
        assert helpers["object"] == {"from": 0}
        assert torch.equal(helpers["tensor"], torch.zeros(2))
        assert helpers["all_true"] is False

    first, second = results
    # 7 images over 2 ranks: 4 per rank, batch 2 -> 2 iterations per epoch, 2 epochs
    assert first["iterations"] == second["iterations"] == 4
    assert torch.equal(first["labels"], second["labels"])
    assert torch.equal(first["memory"], second["memory"])
    for name, value in first["params"].items():
        assert torch.equal(second["params"][name], value), name
    # every slot was updated (each rank applied the other rank's features too)
    initial = ToyMethod()
    initial.setup(None, MethodContext(records))
    assert (first["memory"] - initial.memory).abs().sum(1).min() > 0
    # only rank 0 wrote the checkpoint and the metrics
    assert (out_dir / "checkpoints" / "last.pt").is_file()
    state = torch.load(out_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def test_single_process_helpers_are_identity():
    tensor = torch.arange(3)
    assert LOCAL.all_gather_cat(tensor) is tensor
    assert LOCAL.broadcast_object({"a": 1}) == {"a": 1}
    assert LOCAL.all_gather_object(5) == [5]
    assert gather_pending({"x": tensor}, LOCAL)["x"] is tensor
    assert LOCAL.is_main and not LOCAL.enabled
