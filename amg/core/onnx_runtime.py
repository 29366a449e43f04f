"""Trained networks exported to ONNX and run by ONNX Runtime on the CPU, in fp32 or quantized to int8.

Measured on 2 cores (benchmarks/render.py): ONNX Runtime runs AMG's small-channel convolutions at about 80 % of
the matmul ceiling, PyTorch at 50-55 %: 1.5x the frames per second. The fp32 export takes a second or two, so it
is made in memory when a network is loaded. An int8 model needs calibration on the network's own inputs (seconds
to a minute), so it is cached on disk, stamped with a key of what it was made from: a network trained further
gets a new key, and its stale int8 model is made again.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from amg.core.errors import AmgError
from amg.core.fsutil import atomic_path
from amg.core.precision import PrecisionPlan

log = logging.getLogger(__name__)

# The metadata entry of a cached int8 model that holds the key of what it was made from.
SOURCE_KEY = "amg.source"


class OnnxModel:
    """An ONNX model (its bytes) as an ONNX Runtime session on the CPU. Its per-call input is "input" (any batch
    size); `constants` are further inputs that are the same in every call (passed by name, once converted)."""

    def __init__(self, model: bytes, constants: dict[str, torch.Tensor] | None = None):
        self.session = cpu_session(model)
        self.constants = {name: value.numpy() for name, value in (constants or {}).items()}

    @classmethod
    def exported(
        cls, module: nn.Module, example: torch.Tensor, constants: dict[str, torch.Tensor] | None = None
    ) -> OnnxModel:
        """`module`, exported with `example` as its per-call input, in fp32."""
        return cls(export_onnx(module, example, constants or {}), constants)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The model's (first) output for `x`."""
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


def quantize_int8(model: bytes, calibration: Iterable[dict[str, np.ndarray]]) -> bytes:
    """`model` quantized by ONNX Runtime (QDQ: int8 weights per output channel, uint8 activations), the ranges of
    its activations the min and max over `calibration` (each item: one call's inputs by name)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="amg-int8-") as scratch:
        source, prepared, out = (Path(scratch) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(model)
        # AMG's generator defeats ONNX Runtime's symbolic shape inference; ONNX's own is enough for the QDQ pass.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_after_the_convolutions(str(prepared)),
        )
        return out.read_bytes()


def _after_the_convolutions(path: str) -> list[str]:
    """The names of the nodes of the ONNX model at `path` that lead to no convolution's input: its last
    convolutions and what follows them (for AMG's generator, its output heads, the blend over the candidates,
    their finest band and the matte)."""
    import onnx

    nodes = onnx.load_model(path).graph.node
    producer = {output: node for node in nodes for output in node.output}
    trunk: set[str] = set()
    pending = [producer[name] for node in nodes if node.op_type == "Conv" for name in node.input if name in producer]
    while pending:
        node = pending.pop()
        if node.name not in trunk:
            trunk.add(node.name)
            pending.extend(producer[name] for name in node.input if name in producer)
    return [node.name for node in nodes if node.name not in trunk]


def cached_model(path: Path, key: str, make: Callable[[], bytes]) -> bytes:
    """The ONNX model at `path` if it was made from `key`, else `make()`'s, stamped with `key` and written there
    atomically (where it cannot be written, it is used from memory). A damaged file is made again."""
    import onnx

    try:
        cached = path.read_bytes()
        if _source_key(onnx.load_model_from_string(cached)) == key:
            return cached
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a cut or foreign file fails in the protobuf parser in many ways
        log.warning("The cached model %s cannot be read (%s): making it again.", path, exc)
    proto = onnx.load_model_from_string(make())
    entry = proto.metadata_props.add()
    entry.key, entry.value = SOURCE_KEY, key
    model = proto.SerializeToString()
    try:
        with atomic_path(path) as part:
            part.write_bytes(model)
    except OSError as exc:
        log.warning("The model could not be cached at %s (%s): it will be made again next time.", path, exc)
    return model


def _source_key(proto) -> str | None:
    return next((entry.value for entry in proto.metadata_props if entry.key == SOURCE_KEY), None)


def resolved_engine(engine: str, precision: PrecisionPlan, quantizable: bool = False) -> str:
    """What runs a network: "torch", "onnxruntime" (fp32) or "int8" (ONNX Runtime, quantized: asked for, and only
    for networks that can be calibrated, `quantizable`; others run it in fp32). "auto": PyTorch where the
    precision policy picks a reduced format (a GPU, or a CPU with a bf16 matrix engine, whose bf16 channels-last
    kernels beat ONNX Runtime's fp32: benchmarks/precision.py), else ONNX Runtime in fp32 (int8 measured only
    1.1-1.2x faster: docs/decisions.md)."""
    on_cpu = precision.device.type == "cpu"
    if engine == "auto":
        return "torch" if precision.reduced or not on_cpu else "onnxruntime"
    if not on_cpu and engine != "torch":
        raise AmgError(f"The {engine} engine runs on a CPU: use render.engine auto or torch on a GPU.")
    return "onnxruntime" if engine == "int8" and not quantizable else engine


def inference_engine(
    module: nn.Module,
    example: torch.Tensor,
    constants: dict[str, torch.Tensor] | None,
    engine: str,
    precision: PrecisionPlan,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module`'s (first) output as a function of its per-call input, run by `resolved_engine(engine, precision)`
    (ONNX Runtime computes in fp32 whatever the precision; an int8 model is made by its owner, who has the inputs
    to calibrate it: OnnxModel)."""
    constants = constants or {}
    if resolved_engine(engine, precision) == "onnxruntime":
        return OnnxModel.exported(module, example, constants)
    precision.prepare(module)

    def run(x: torch.Tensor) -> torch.Tensor:
        with precision.autocast():
            out = module(precision.images(x), *constants.values())
        return out[0] if isinstance(out, tuple) else out

    return run
