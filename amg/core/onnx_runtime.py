"""Trained networks exported to ONNX and run by ONNX Runtime on the CPU, in fp32 or quantized to int8.

Measured on 2 cores (benchmarks/render.py): ONNX Runtime runs AMG's small-channel convolutions at about 80 % of
the matmul ceiling, PyTorch at 50-55 %: 1.5x the frames per second. The fp32 export takes a second or two, so it
is made in memory when a network is loaded. An int8 model needs calibration on the network's own inputs (seconds
to a minute), so it is cached on disk, stamped with a key of what it was made from: a network trained further
gets a new key, and its stale int8 model is made again.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from amg.core.errors import AmgError
from amg.core.fsutil import amg_home, atomic_path
from amg.core.precision import PrecisionPlan, alternated_timings, cpu_flags, cpu_model

log = logging.getLogger(__name__)

# The metadata entry of a cached int8 model that holds the key of what it was made from.
SOURCE_KEY = "amg.source"
# The race of PyTorch's bf16 against ONNX Runtime's fp32 (measured_engine): a batch of this many frames, 3
# alternated rounds. PyTorch must be this much faster to be chosen: ONNX Runtime's fp32 is the exact path, and a
# near tie should not trade exactness for a few percent.
RACE_BATCH = 4
TORCH_MARGIN = 1.1
# The CPU flags whose presence changes the race's outcome (a model name may be masked by the hypervisor).
ENGINE_FLAGS = {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"}
ENGINE_RECORDS = "engines.json"


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
    """What runs a network when no measurement decides: "torch", "onnxruntime" (fp32) or "int8" (ONNX Runtime,
    quantized: asked for, and only for networks that can be calibrated, `quantizable`; others run it in fp32).
    "auto": PyTorch on a GPU, ONNX Runtime in fp32 on a CPU (int8 measured only 1.1-1.2x faster:
    docs/decisions.md); where the precision policy picks bf16 on a CPU, inference_engine measures instead."""
    on_cpu = precision.device.type == "cpu"
    if engine == "auto":
        return "onnxruntime" if on_cpu else "torch"
    if not on_cpu and engine != "torch":
        raise AmgError(f"The {engine} engine runs on a CPU: use render.engine auto or torch on a GPU.")
    return "onnxruntime" if engine == "int8" and not quantizable else engine


def inference_engine(
    module: nn.Module,
    example: torch.Tensor,
    constants: dict[str, torch.Tensor] | None,
    engine: str,
    precision: PrecisionPlan,
) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """(the engine's name, `module`'s (first) output as a function of its per-call input). "auto" where the
    precision policy picks bf16 on a CPU: the faster of PyTorch in bf16 and ONNX Runtime in fp32 for this
    network on this machine (measured_engine); else resolved_engine's. (ONNX Runtime computes in fp32 whatever
    the precision; an int8 model is made by its owner, who has the inputs to calibrate it: OnnxModel.)"""
    constants = constants or {}
    if engine == "auto" and precision.reduced and precision.device.type == "cpu":
        return measured_engine(module, example, constants, precision)
    if resolved_engine(engine, precision) == "onnxruntime":
        return "onnxruntime", OnnxModel.exported(module, example, constants)
    return "torch", torch_engine(module, constants, precision)


def torch_engine(
    module: nn.Module, constants: dict[str, torch.Tensor], precision: PrecisionPlan
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module` run by PyTorch in `precision` (its convolutions in its memory format, autocast)."""
    precision.prepare(module)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), precision.autocast():
            out = module(precision.images(x), *constants.values())
        return out[0] if isinstance(out, tuple) else out

    return run


def measured_engine(
    module: nn.Module, example: torch.Tensor, constants: dict[str, torch.Tensor], precision: PrecisionPlan
) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """PyTorch in `precision` or ONNX Runtime in fp32, whichever ran `module` faster on this machine: raced
    once per CPU, library versions and network shape, the choice kept in AMG's user folder (engines.json), so
    every later load takes the same engine without measuring and a near tie cannot flip between runs. Which
    wins depends on the CPU and the network's width (benchmarks/RESULTS.md, "Precision"): AMX's bf16 beats
    ONNX Runtime's fp32, AVX512-BF16 does for wide generators only."""
    key = _engine_key(module, example, constants, precision)
    record = _engine_records().get(key)
    if not (isinstance(record, dict) and record.get("engine") in ("torch", "onnxruntime")):  # none, or damaged
        onnx = OnnxModel.exported(module, example, constants)
        torch_run = torch_engine(module, constants, precision)
        batch = example.expand(RACE_BATCH, *example.shape[1:]).contiguous()
        seconds = alternated_timings({"torch": lambda: torch_run(batch), "onnxruntime": lambda: onnx(batch)}, 3)
        faster = seconds["onnxruntime"] / seconds["torch"]
        record = {"engine": "torch" if faster >= TORCH_MARGIN else "onnxruntime", "torch_speedup": round(faster, 3)}
        _keep_engine_record(key, record)
        run = torch_run if record["engine"] == "torch" else onnx
    elif record["engine"] == "torch":
        run = torch_engine(module, constants, precision)
    else:
        run = OnnxModel.exported(module, example, constants)
    log.info(
        "Engine for %s: %s (PyTorch %s ran it %.2fx ONNX Runtime's fp32 speed here).",
        type(module).__name__,
        "PyTorch" if record["engine"] == "torch" else "ONNX Runtime",
        precision.name,
        record.get("torch_speedup", float("nan")),
    )
    return record["engine"], run


def _engine_key(
    module: nn.Module, example: torch.Tensor, constants: dict[str, torch.Tensor], precision: PrecisionPlan
) -> str:
    """What the race's outcome depends on: the network's class, size and input shapes, the precision, the CPU,
    the thread count and both libraries' versions."""
    import onnxruntime

    shapes = [tuple(example.shape[1:]), *(tuple(c.shape) for c in constants.values())]
    n_parameters = sum(p.numel() for p in module.parameters())
    return "|".join(
        str(part)
        for part in (
            type(module).__qualname__,
            n_parameters,
            shapes,
            precision.name,
            cpu_model(),
            ",".join(sorted(cpu_flags() & ENGINE_FLAGS)),
            torch.get_num_threads(),
            torch.__version__,
            onnxruntime.__version__,
        )
    )


def _engine_records() -> dict[str, dict]:
    try:
        records = json.loads((amg_home() / ENGINE_RECORDS).read_text())
    except (OSError, ValueError):  # none yet, or damaged: measured again
        return {}
    return records if isinstance(records, dict) else {}


def _keep_engine_record(key: str, record: dict) -> None:
    path = amg_home() / ENGINE_RECORDS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as part:
            part.write_text(json.dumps(_engine_records() | {key: record}, indent=1))
    except OSError as exc:
        log.warning("The engine choice could not be kept at %s (%s): it will be measured again.", path, exc)
