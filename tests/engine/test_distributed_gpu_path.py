"""Two CPU processes with gloo: the memory initialisation split across ranks gives exactly the
serial result in slot order, and ``gather_from_other_ranks`` hands each rank only the other
ranks' rows (cross-rank hard-example mining)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from personsearch.comm import LOCAL, cleanup_distributed, init_distributed
from personsearch.data.records import SceneRecord
from personsearch.methods.common import extract_across_ranks

BOX_COUNTS = (2, 0, 3, 1, 4)  # 10 slots over 5 images (one without persons)


def _records() -> list[SceneRecord]:
    out = []
    for index, count in enumerate(BOX_COUNTS):
        boxes = np.tile(np.array([[0, 0, 4, 8]], np.float32), (count, 1))
        out.append(SceneRecord(f"/x/{index}.jpg", f"{index}.jpg", 8, 8, boxes, -np.ones(count, np.int64), 0, index))
    return out


def _extract(records) -> torch.Tensor:
    """Features that name their slot: row = (image index, box index, 1)."""
    rows = [[float(r.image_index), float(k), 1.0] for r in records for k in range(r.num_boxes)]
    return torch.tensor(rows).reshape(-1, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = init_distributed("cpu")
    try:
        seen = []
        features = extract_across_ranks(_records(), lambda rs: seen.append([r.image_index for r in rs]) or _extract(rs), dist)
        others = dist.gather_from_other_ranks(torch.full((rank + 1, 2), float(rank), requires_grad=True))
        torch.save({"features": features, "seen": seen, "others": others.detach(),
                    "others_grad": others.requires_grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


@pytest.mark.timeout(300)
def test_split_memory_init_and_other_ranks_gather(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    serial = _extract(_records())
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank, result in enumerate(results):
        assert torch.equal(result["features"], serial)  # slot order, identical on both ranks
        assert result["seen"] == ([[0, 2, 4]] if rank == 0 else [[1, 3]])  # each its share only
        assert not result["others_grad"]
    assert torch.equal(results[0]["others"], torch.full((2, 2), 1.0))  # rank 1's two rows
    assert torch.equal(results[1]["others"], torch.full((1, 2), 0.0))  # rank 0's one row
    assert LOCAL.gather_from_other_ranks(torch.ones(3, 2)).shape == (0, 2)
    assert torch.equal(extract_across_ranks(_records(), _extract, LOCAL), serial)
