"""Data-parallel training across processes started by `torchrun` (one per GPU, or a few on a CPU).

    torchrun --nproc_per_node 2 -m amg train DATAROOT NAME --stage gan

Every rank runs the same code: it builds the same networks from the same seed, draws the step's whole batch
from the same deterministic sampler and trains on its share (`share`); after each backward the gradients are
averaged over the ranks (`average_gradients`, one all-reduce per bucket), so every rank takes the same
optimizer step and the weights, the discriminators and the generator's moving average stay identical on all
of them. A step of N ranks is therefore the step of one process on the whole batch (the global batch is the
config's batch; each rank computes batch / N of it): the learning rates need no scaling, and a checkpoint
resumes on any number of ranks. Rank 0 alone writes checkpoints, TensorBoard, samples and reports.

NCCL on GPUs, gloo on CPUs. torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) decides;
without it everything here is a no-op of one rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

import torch
import torch.distributed as dist

from amg.core.errors import AmgError

T = TypeVar("T")
# Rank 0 may preprocess the video while the others wait at a barrier: minutes, not the default 30 s of NCCL.
_TIMEOUT = datetime.timedelta(hours=2)
# Gradients are all-reduced in flat buckets of about this many bytes: few calls, bounded extra memory.
_BUCKET_BYTES = 25 << 20


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, items: Sequence[T]) -> Sequence[T]:
        """This rank's contiguous share of a global batch (whose size must divide by the world size)."""
        if len(items) % self.size:
            raise AmgError(
                f"A batch of {len(items)} does not split over {self.size} ranks: use a multiple of {self.size}."
            )
        per_rank = len(items) // self.size
        return items[self.rank * per_rank : (self.rank + 1) * per_rank]


def world() -> World:
    """The ranks of this run, from torchrun's environment (one rank without it)."""
    return World(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init_distributed() -> World:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs); a no-op for one rank."""
    w = world()
    if w.distributed and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(w.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=_TIMEOUT)
    return w


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (bucketed flat all-reduces)."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    bucket: list[torch.Tensor] = []
    filled = 0
    for i, grad in enumerate(grads):
        bucket.append(grad)
        filled += grad.numel() * grad.element_size()
        if i == len(grads) - 1 or filled >= _BUCKET_BYTES:
            _average_bucket(bucket)
            bucket, filled = [], 0


def _average_bucket(grads: list[torch.Tensor]) -> None:
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _device() -> torch.device:
    """Where small tensors for a collective must live: NCCL reduces GPU tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (the losses of the whole batch, from each rank's share)."""
    if not active():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / dist.get_world_size()).tolist()))


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (so that all stop at the same step)."""
    if not active():
        return flag
    tensor = torch.tensor([int(flag)], device=_device())
    dist.all_reduce(tensor)
    return bool(tensor.item())
