"""One precision policy for training and rendering: which number format the networks compute in, on this machine.

`auto` picks bf16 on a CPU with a bf16 matrix engine (AMX-BF16 or AVX512-BF16, read from the CPU's flags at run
time, then confirmed by a quick self-check that bf16 computes close to fp32 and faster), bf16 autocast on a GPU
that has it and fp16 autocast on one that does not, and fp32 everywhere else. `fp32`, `bf16` and `fp16` force a
format. The choice is logged once per process.

In every reduced format the weights stay fp32 (the optimiser updates them; checkpoints hold them), the
convolutions and matrix products run in the reduced format (autocast), images and feature maps are kept
channels-last (what oneDNN's and cuDNN's fast kernels read), and losses and the final blend are computed in
fp32. fp32 changes nothing: same memory format, same kernels, same numbers as before the policy existed.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import statistics
import time
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import torch

from amg.core.errors import AmgError

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags (Linux /proc/cpuinfo) of a bf16 matrix engine, best first.
_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
# The self-check: bf16 must agree with fp32 this closely (relative error of a product of random matrices; bf16
# keeps 8 bits of mantissa) and run faster by this much, else an engine the flags promise is not there (a
# hypervisor that hides AMX's state, an emulated instruction: slower than fp32). A real engine is 3-6x fp32 on a
# matrix product this size; the margin keeps a busy shared host from flipping the choice.
_MAX_BF16_ERROR = 2e-2
_MIN_BF16_SPEEDUP = 1.2


@dataclass(frozen=True)
class PrecisionPlan:
    """The resolved precision for one device: `name` is fp32, bf16 or fp16; `reason` says why it was chosen."""

    name: str
    device: torch.device
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.name != "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last for the reduced formats (their fast kernels read it); fp32 keeps today's layout."""
        return torch.channels_last if self.reduced else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """Convolutions and matrix products in the reduced format inside the block (nothing changes in fp32)."""
        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module`'s 2-D convolutions in this plan's memory format (channels-last); its weights stay fp32,
        autocast casts them per operation."""
        if self.reduced:
            for layer in module.modules():
                if isinstance(layer, torch.nn.Conv2d):
                    layer.to(memory_format=torch.channels_last)
        return module

    def volumetric(self) -> contextlib.AbstractContextManager:
        """The context for 3-D convolutions: fp32 on a CPU, where oneDNN's reduced-precision Conv3d backward
        crashes or stalls for inputs past 128² (PyTorch 2.13: a segmentation fault at 192², minutes at 256²);
        the plan's autocast elsewhere."""
        if self.reduced and self.device.type == "cpu":
            return torch.autocast("cpu", enabled=False)
        return self.autocast()

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16's loss scaler (its small gradients would underflow); None for fp32 and bf16, which need none."""
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) batch in this plan's memory format."""
        return x.contiguous(memory_format=self.memory_format) if self.reduced and x.dim() == 4 else x


def check_precision(requested: str) -> str:
    if requested not in PRECISIONS:
        raise AmgError(f"Unknown precision {requested!r}: use one of {', '.join(PRECISIONS)}.")
    return requested


def resolve_precision(requested: str, device: torch.device) -> PrecisionPlan:
    """The precision `requested` (auto, fp32, bf16, fp16) means on `device`; logged the first time it is asked."""
    plan = _resolve(check_precision(requested), torch.device(device).type)
    plan = PrecisionPlan(plan.name, torch.device(device), plan.reason)
    _log_once(plan.name, plan.device.type, plan.reason)
    return plan


@cache
def _resolve(requested: str, device_type: str) -> PrecisionPlan:
    device = torch.device(device_type)
    if requested != "auto":
        return PrecisionPlan(requested, device, "asked for")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionPlan("bf16", device, "the GPU computes bf16")
        return PrecisionPlan("fp16", device, "the GPU has no bf16: fp16 autocast")
    if device_type != "cpu":
        return PrecisionPlan("fp32", device, f"no reduced precision policy for {device_type}")
    engine = cpu_bf16_engine()
    if engine is None:
        return PrecisionPlan("fp32", device, "the CPU has no bf16 matrix engine")
    passed, detail = bf16_self_check()
    if not passed:
        return PrecisionPlan("fp32", device, f"the CPU reports {engine} but the bf16 self-check failed ({detail})")
    return PrecisionPlan("bf16", device, f"the CPU has {engine} ({detail})")


@cache
def _log_once(name: str, device_type: str, reason: str) -> None:
    log.info("Precision: %s on %s (%s).", name, device_type, reason)


def cpu_bf16_engine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's bf16 matrix engine by its flags ("AMX-BF16", "AVX512-BF16"), or None (also where the flags
    cannot be read: other systems than Linux run fp32 unless asked)."""
    flags = cpu_flags(cpuinfo)
    return next((name for flag, name in _BF16_FLAGS.items() if flag in flags), None)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as Linux gives it (hypervisors may mask it), else the platform's word for it."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags as Linux lists them (empty where they cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def bf16_self_check(size: int = 768, repeats: int = 5) -> tuple[bool, str]:
    """Whether bf16 products of random matrices agree with fp32 and run faster here: (passed, what was seen).
    About 50 ms."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    a16, b16 = a.bfloat16(), b.bfloat16()
    exact = a @ b
    error = float((a16 @ b16).float().sub(exact).norm() / exact.norm())
    speedup = _best_time(lambda: a @ b, repeats) / _best_time(lambda: a16 @ b16, repeats)
    detail = f"bf16 error {error:.1e}, {speedup:.1f}x fp32's speed"
    return error <= _MAX_BF16_ERROR and speedup >= _MIN_BF16_SPEEDUP, detail


def alternated_timings(fns: dict[str, typing.Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds per call of each function: the median over `rounds`, the functions alternating in each round (a
    busy shared host slows them alike), after one warm-up call each (kernels chosen, memory allocated)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _best_time(fn, repeats: int) -> float:
    fn()  # the first call pays for the kernel's set-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
