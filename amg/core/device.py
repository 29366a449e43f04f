"""Where tensors live and how many threads the small networks use."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from amg.core.distributed import world


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Torch on one CPU thread inside the block, for the small motion networks. Splitting their small ops over
    threads gains little, and one thread needs only one free core when other processes want the rest.
    Measured (Audio→Expression on the 8-s sample, 2 cores, another process using about one): 27 ms/step on 1
    thread, 19 on 2; beside one more CPU-bound process, 44 and 43: a few seconds either way for 400 steps."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device() -> torch.device:
    """The GPU when there is one (a rank's own GPU under torchrun), else the CPU."""
    return torch.device("cuda", world().local_rank) if torch.cuda.is_available() else torch.device("cpu")
