"""Data-parallel training across processes (``torchrun``), for the trainers that draw each step's
global mini-batch as a pure function of the step (ε_θ of Kernel-Diff).

Every process draws the same global batch and keeps its own contiguous part of it;
DistributedDataParallel averages the gradients, which for equal parts is the gradient of the
global batch's mean loss, so a run on P processes follows the single-process run to float
tolerance (the sums are only grouped differently). The weights, the optimiser and the EMA stay
identical in every process; only rank 0 writes checkpoints. Outside ``torch.distributed`` (no
process group) everything here is the identity: one process, rank 0.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Shard:
    """This process's ``rank`` among ``world`` processes."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Shard":
        """The shard of the initialised process group (``torchrun`` sets it up), else (0, 1)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def writes(self) -> bool:
        """Whether this process writes files (rank 0 only)."""
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ValueError(f"the global batch of {batch_size} does not split into {self.world} equal parts: "
                             f"choose a batch size divisible by the number of processes")

    def take(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This process's contiguous part of each global batch (first dimension)."""
        return tuple(t.chunk(self.world)[self.rank] if self.world > 1 else t for t in tensors)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under DistributedDataParallel when there are several processes (its gradients
        are then averaged across them in backward), else ``model`` itself."""
        return nn.parallel.DistributedDataParallel(model) if self.world > 1 else model

    def rank_zero_first(self, fn):
        """``fn()`` on rank 0, then, once it has returned, on the other ranks: for a step that may
        move or write files (an old checkpoint moved aside), which the others then only read."""
        if self.world == 1:
            return fn()
        result = fn() if self.rank == 0 else None
        dist.barrier()
        return result if self.rank == 0 else fn()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes (a logged loss: that of the global batch)."""
        if self.world == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total) / self.world


@contextlib.contextmanager
def process_group(device: str | torch.device | None):
    """The process group ``torchrun`` asks for (its ``WORLD_SIZE`` > 1 in the environment), for
    the block: gloo on the CPU, NCCL on CUDA with this process's ``LOCAL_RANK`` GPU. Without
    torchrun the block runs as one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    cuda = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
