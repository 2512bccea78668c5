"""Process-level helpers shared by the engine, the methods and the data loader (as detectron2's
``utils/comm.py``): the torch.distributed context (torchrun: RANK, WORLD_SIZE, LOCAL_RANK) and
seeded random generators. It imports nothing from the rest of the package, so ``engine`` and
``methods`` both depend on it and never on each other's internals (``methods`` never imports
``engine``).

A :class:`DistContext` is handed to the trainer and, in the method's context, to the method
(``MethodContext.dist``, read as ``method.dist``). With one
process every helper is the identity, so methods call them unconditionally:

- ``dist.is_main`` — rank 0 (writes files, computes pseudo labels).
- ``dist.all_gather_cat(tensor)`` — concatenate every rank's tensor along dim 0; sizes along
  dim 0 may differ between ranks (padded to the largest, then trimmed).
- ``dist.gather_from_other_ranks(tensor)`` — the other ranks' rows only, detached (cross-rank
  hard-example mining); empty with one process.
- ``dist.broadcast_tensor(tensor, src=0)`` — in place, returns it; shape and dtype must match.
- ``dist.broadcast_object(obj, src=0)`` — any picklable object from ``src``.
- ``dist.all_gather_object(obj)`` — list of every rank's object.
- ``dist.barrier()``, ``dist.all_reduce_min_bool(flag)``.

Backends: gloo on CPU, nccl on CUDA. NCCL collectives need CUDA tensors; the helpers move a
tensor to ``dist.device`` for the collective and back to where it came from.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def _to_comm(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8)
        return tensor.to(self.device).contiguous()

    def _gather_list(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (detached, rank order), on ``tensor``'s device and dtype."""
        if tensor.dim() == 0:
            raise ValueError("gathering needs a tensor with a leading batch dimension")
        source_device, source_dtype = tensor.device, tensor.dtype
        local = self._to_comm(tensor)
        size = torch.tensor([local.shape[0]], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        torch_dist.all_gather(sizes, size)
        sizes_list = torch.cat(sizes).tolist()  # one host read
        max_size = max(sizes_list)
        padded = local.new_zeros((max_size,) + tuple(local.shape[1:]))
        padded[: local.shape[0]] = local
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch_dist.all_gather(gathered, padded)
        return [g[:n].to(device=source_device, dtype=source_dtype) for g, n in zip(gathered, sizes_list)]

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along dim 0 (rank order). Trailing dimensions
        and dtype must agree; the leading size may differ."""
        if not self.enabled:
            return tensor
        return torch.cat(self._gather_list(tensor), dim=0)

    def gather_from_other_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """The other ranks' ``tensor`` rows concatenated in rank order, detached (no gradient
        crosses processes); empty [0, ...] with one process. For cross-rank hard-example
        mining: local rows keep their gradient, the other ranks' rows are extra candidates."""
        if not self.enabled:
            return tensor.detach()[:0]
        parts = self._gather_list(tensor)
        return torch.cat([part for rank, part in enumerate(parts) if rank != self.rank], dim=0)

    def broadcast_tensor(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` (in place) with rank ``src``'s values; returns it."""
        if not self.enabled:
            return tensor
        comm = self._to_comm(tensor)
        torch_dist.broadcast(comm, src=src)
        with torch.no_grad():
            tensor.copy_(comm.to(device=tensor.device, dtype=tensor.dtype))
        return tensor

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if not self.enabled:
            return obj
        holder = [obj if self.rank == src else None]
        torch_dist.broadcast_object_list(holder, src=src, device=self._object_device())
        return holder[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def all_reduce_min_bool(self, flag: bool) -> bool:
        """True only if ``flag`` is True on every rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MIN)
        return bool(value.item())

    def _object_device(self) -> torch.device | None:
        return self.device if self.backend == "nccl" else None


def gather_pending(pending: Any, dist: DistContext) -> Any:
    """Gather a method's pending update across ranks: every tensor (nested in dicts/lists) is
    concatenated along dim 0 in rank order. Non-tensor leaves must be equal on every rank and
    are passed through."""
    if not dist.enabled:
        return pending
    if isinstance(pending, torch.Tensor):
        return dist.all_gather_cat(pending)
    if isinstance(pending, dict):
        return {key: gather_pending(pending[key], dist) for key in sorted(pending)}
    if isinstance(pending, (list, tuple)):
        return type(pending)(gather_pending(value, dist) for value in pending)
    return pending


def init_distributed(device: str = "auto", timeout_minutes: float = 120.0) -> DistContext:
    """Initialise the process group from torchrun's environment (no-op without WORLD_SIZE>1).

    ``device``: "auto" (cuda if available), "cpu", "cuda" or "cuda:N". Under torchrun on CUDA
    each process takes ``cuda:LOCAL_RANK``. ``timeout_minutes`` bounds every collective: the
    other ranks wait in one while rank 0 evaluates, so it is generous.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if world_size > 1:
            torch_device = torch.device("cuda", local_rank)
        else:
            torch_device = torch.device(device if device.startswith("cuda") else "cuda")
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    if world_size <= 1:
        return DistContext(device=torch_device)
    backend = "nccl" if use_cuda else "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return DistContext(rank, world_size, local_rank, backend, torch_device)


def cleanup_distributed() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


LOCAL = DistContext()


def seeded_generator(*entropy: int) -> torch.Generator:
    """A torch.Generator seeded from the given integers (numpy SeedSequence mixing): the same
    integers give the same stream, whatever the global RNG state or process."""
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0]))
    return generator
