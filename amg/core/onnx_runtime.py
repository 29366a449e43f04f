"""Trained networks exported to ONNX in memory and run by ONNX Runtime on the CPU.

Measured on 2 cores (benchmarks/render.py): ONNX Runtime runs AMG's small-channel convolutions at about 80 % of
the matmul ceiling, PyTorch at 50-55 %: 1.5x the frames per second. The export takes a second or two, so it is
made in memory when a network is loaded rather than cached on disk (a cached file could go stale when training
resumes).
"""

from __future__ import annotations

import io
from typing import Callable

import torch
from torch import nn

from amg.core.precision import PrecisionPlan


class OnnxModel:
    """`module` as an ONNX Runtime session. `example` is its per-call input (any batch size); `constants` are
    further inputs that are the same in every call (passed by name, once converted)."""

    def __init__(self, module: nn.Module, example: torch.Tensor, constants: dict[str, torch.Tensor] | None = None):
        constants = constants or {}
        self.session = cpu_session(export_onnx(module, example, constants))
        self.constants = {name: value.numpy() for name, value in constants.items()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The module's (first) output for `x`."""
        return torch.from_numpy(self.session.run(None, {"input": x.numpy()} | self.constants)[0])


def cpu_session(model: bytes | str):
    """An ONNX Runtime session of `model` (its bytes or a path) on the CPU, with PyTorch's number of threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # No busy-waiting between ops: the conditioning thread and the encoder need the cores meanwhile.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def export_onnx(module: nn.Module, example: torch.Tensor, constants: dict[str, torch.Tensor]) -> bytes:
    """`module` as an ONNX model whose inputs are "input" (any batch size) and `constants` by name, and whose
    outputs are "output0", "output1", ..."""
    buffer = io.BytesIO()
    with torch.no_grad():
        n_outputs = len(out) if isinstance(out := module(example, *constants.values()), tuple) else 1
    outputs = [f"output{i}" for i in range(n_outputs)]
    torch.onnx.export(
        module,
        (example, *constants.values()),
        buffer,
        dynamo=False,
        input_names=["input", *constants],
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]},
    )
    return buffer.getvalue()


def runs_in_torch(engine: str, precision: PrecisionPlan) -> bool:
    """Whether inference_engine runs a network in PyTorch (else in ONNX Runtime)."""
    on_cpu = precision.device.type == "cpu"
    return not (engine == "onnxruntime" or (engine == "auto" and on_cpu and not precision.reduced))


def inference_engine(
    module: nn.Module,
    example: torch.Tensor,
    constants: dict[str, torch.Tensor] | None,
    engine: str,
    precision: PrecisionPlan,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module`'s (first) output as a function of its per-call input, run by the fastest engine: "auto" is PyTorch
    where the precision policy picks a reduced format (a GPU, or a CPU with a bf16 matrix engine, whose bf16
    channels-last kernels beat ONNX Runtime's fp32: benchmarks/precision.py), else ONNX Runtime on a CPU;
    "torch" and "onnxruntime" force one (ONNX Runtime computes in fp32 whatever the precision)."""
    constants = constants or {}
    if not runs_in_torch(engine, precision):
        return OnnxModel(module, example, constants)
    precision.prepare(module)

    def run(x: torch.Tensor) -> torch.Tensor:
        with precision.autocast():
            out = module(precision.images(x), *constants.values())
        return out[0] if isinstance(out, tuple) else out

    return run
