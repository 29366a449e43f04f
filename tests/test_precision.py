"""amg.core.precision: what `auto` picks on each kind of machine (the capability check faked both ways), that fp32
changes nothing, and that the image GAN trains, resumes across precisions and renders in bf16 without banding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amg.config import GanConfig
from amg.core import onnx_runtime, precision
from amg.core.errors import AmgError
from amg.core.onnx_runtime import inference_engine, resolved_engine
from amg.core.precision import bf16_self_check, cpu_bf16_engine, resolve_precision
from amg.core.tensors import to_tensor
from amg.gan.networks import Generator

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {extra}\n"


@pytest.fixture(autouse=True)
def _fresh_resolution():
    """Each test sees its own (faked) machine: forget what earlier resolutions cached."""
    precision._resolve.cache_clear()
    yield
    precision._resolve.cache_clear()


@pytest.mark.parametrize(
    ("flags", "engine"),
    [("avx512f amx_tile amx_bf16 avx512_bf16", "AMX-BF16"), ("avx512f avx512_bf16", "AVX512-BF16"), ("avx512f", None)],
)
def test_the_bf16_engine_is_read_from_the_cpu_flags(tmp_path, flags, engine):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=flags))
    assert cpu_bf16_engine(cpuinfo) == engine
    assert cpu_bf16_engine(tmp_path / "missing") is None  # not Linux: no reduced precision unless asked


def test_the_engine_of_each_network(monkeypatch):
    """auto without a measurement: ONNX Runtime on a CPU, PyTorch on a GPU; int8 only where asked for and only
    for a network that can be calibrated (the generator); ONNX Runtime engines refuse a GPU."""
    monkeypatch.setattr(precision, "cpu_bf16_engine", lambda: None)
    fp32, bf16 = resolve_precision("auto", "cpu"), resolve_precision("bf16", "cpu")
    assert resolved_engine("auto", fp32, quantizable=True) == "onnxruntime"
    assert resolved_engine("torch", bf16, quantizable=True) == "torch"
    assert resolved_engine("int8", fp32, quantizable=True) == resolved_engine("int8", bf16, quantizable=True) == "int8"
    assert resolved_engine("int8", fp32) == "onnxruntime"  # the face refiner: nothing to calibrate it on
    gpu = precision.PrecisionPlan("bf16", torch.device("cuda"), "the GPU computes bf16")
    assert resolved_engine("auto", gpu, quantizable=True) == "torch"
    with pytest.raises(AmgError, match="runs on a CPU"):
        resolved_engine("int8", gpu, quantizable=True)


@pytest.mark.parametrize(("torch_seconds", "engine"), [(0.5, "torch"), (0.95, "onnxruntime"), (2.0, "onnxruntime")])
def test_auto_in_bf16_on_a_cpu_races_the_engines_once_per_machine(monkeypatch, tmp_path, torch_seconds, engine):
    """Where bf16 is picked on a CPU, "auto" takes PyTorch's bf16 only where it ran the network at least
    TORCH_MARGIN faster than ONNX Runtime's fp32 (AMX: yes; AVX512-BF16 on a thin generator: no, measured); the
    choice is remembered in AMG's user folder and reused without racing again; a damaged record is raced anew;
    fp32 and explicit engines never race. Both engines compute the network."""
    monkeypatch.setenv("AMG_HOME", str(tmp_path))
    races = []

    def timings(fns, rounds):
        races.append(sorted(fns))
        for fn in fns.values():
            assert fn().shape == (onnx_runtime.RACE_BATCH, 3, 16, 16)
        return {"torch": torch_seconds, "onnxruntime": 1.0}

    monkeypatch.setattr(onnx_runtime, "alternated_timings", timings)
    net, example = _generator(), torch.rand(1, 2 * 8 + 12, 16, 16) * 2 - 1
    with torch.no_grad():
        static_code = net.encode_static(torch.zeros(1, 3, 16, 16))
    constants = {"static_code": static_code, "background": torch.zeros(1, 3, 16, 16)}
    bf16 = resolve_precision("bf16", "cpu")
    name, run = inference_engine(net, example, constants, "auto", bf16)
    assert (name, races) == (engine, [["onnxruntime", "torch"]])
    again, run_again = inference_engine(_generator(), example, constants, "auto", bf16)
    assert again == engine and len(races) == 1  # remembered
    assert torch.allclose(run(example), run_again(example), atol=0.05)
    (tmp_path / onnx_runtime.ENGINE_RECORDS).write_text("{not json")
    assert inference_engine(_generator(), example, constants, "auto", bf16)[0] == engine and len(races) == 2
    records = tmp_path / onnx_runtime.ENGINE_RECORDS
    records.write_text(records.read_text().replace(f'"{engine}"', '"gpu"'))  # an entry no engine answers to
    assert inference_engine(_generator(), example, constants, "auto", bf16)[0] == engine and len(races) == 3
    fp32 = precision.PrecisionPlan("fp32", torch.device("cpu"), "asked for")
    assert inference_engine(_generator(), example, constants, "auto", fp32)[0] == "onnxruntime"
    assert inference_engine(_generator(), example, constants, "torch", bf16)[0] == "torch" and len(races) == 3


def test_auto_is_fp32_on_a_cpu_without_a_bf16_engine(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_engine", lambda: None)
    plan = resolve_precision("auto", "cpu")
    assert plan.name == "fp32" and not plan.reduced and "no bf16" in plan.reason
    assert plan.dtype == torch.float32 and plan.memory_format == torch.contiguous_format


def test_auto_is_bf16_where_the_engine_passes_the_self_check_and_fp32_where_it_fails(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_engine", lambda: "AMX-BF16")
    monkeypatch.setattr(precision, "bf16_self_check", lambda: (True, "fine"))
    assert resolve_precision("auto", "cpu").name == "bf16"
    precision._resolve.cache_clear()
    monkeypatch.setattr(precision, "bf16_self_check", lambda: (False, "1.0x fp32's speed"))
    plan = resolve_precision("auto", "cpu")
    assert plan.name == "fp32" and "self-check failed" in plan.reason


def test_the_self_check_measures_error_and_speed():
    passed, detail = bf16_self_check(size=128, repeats=2)
    assert "error" in detail and "x fp32's speed" in detail
    error = float(detail.split("error ")[1].split(",")[0])
    assert 0 < error < 2e-2  # bf16 keeps 8 bits of mantissa: close to fp32, never equal
    assert isinstance(passed, bool)


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(AmgError, match="Unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def _generator() -> Generator:
    torch.manual_seed(0)
    net = Generator(2, 2 * 8 + 12, 3, 8, 32, 4, GanConfig().detail_sharpness).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def test_a_bf16_input_renders_as_its_float32_input_does():
    """The dynamic input made in bf16 (amg.core.tensors' table per level) renders within a level of the same
    input in float32 under the bf16 plan (the convolutions see the same numbers; the blend reads exact bf16
    levels in float32), and a uint8 ramp keeps every level."""
    size = 64
    ramp = np.broadcast_to(np.linspace(0, 255, size).round().astype(np.uint8), (1, size, size))
    planes = np.concatenate([np.repeat(ramp[..., None], 3, -1), np.full((1, size, size, 5), 128, np.uint8)], -1)
    images = np.concatenate([planes, planes, np.full((1, size, size, 12), 128, np.uint8)], -1)
    bf16 = resolve_precision("bf16", "cpu")
    net = bf16.prepare(_generator())
    background = torch.zeros(1, 3, size, size)
    with torch.no_grad(), bf16.autocast():
        frames = {
            dtype: net(to_tensor(images, channels_last=True, dtype=dtype), net.encode_static(background), background)
            for dtype in (torch.float32, torch.bfloat16)
        }
    levels = {dtype: ((frame[0] + 1) * 127.5).round() for dtype, (frame, _) in frames.items()}
    assert frames[torch.bfloat16][0].dtype == torch.float32
    assert float((levels[torch.bfloat16] - levels[torch.float32]).abs().max()) <= 1
    row = levels[torch.bfloat16][0, size // 2].numpy()
    assert len(np.unique(row)) >= len(np.unique(levels[torch.float32][0, size // 2].numpy())) - 1


def test_fp32_changes_nothing_and_bf16_renders_close_to_it_without_banding():
    """A smooth gradient through the generator: fp32 through the plan is the plain network to the bit; bf16 (its
    convolutions reduced, the final blend over the candidates in fp32) is within a level or two of it, and keeps
    every level of a smooth ramp (bf16 candidates would merge neighbouring levels into bands)."""
    net = _generator()
    size = 64
    ramp = torch.linspace(-1, 1, size).expand(1, 1, size, size)
    dynamic = torch.cat([ramp.expand(1, 3, size, size), torch.zeros(1, 5, size, size)] * 2, dim=1)
    dynamic = torch.cat([dynamic, torch.zeros(1, 12, size, size)], dim=1)
    background = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        plain = net(dynamic, net.encode_static(background), background)[0]
    fp32 = resolve_precision("fp32", "cpu")
    with torch.no_grad(), fp32.autocast():
        same = fp32.prepare(net)(fp32.images(dynamic), net.encode_static(background), background)[0]
    assert torch.equal(plain, same)
    bf16 = resolve_precision("bf16", "cpu")
    with torch.no_grad(), bf16.autocast():
        reduced = bf16.prepare(_generator())(bf16.images(dynamic), net.encode_static(background), background)[0]
    assert reduced.dtype == torch.float32  # the blend promotes to fp32
    levels = ((reduced + 1) * 127.5).round()
    assert float((levels - ((plain + 1) * 127.5).round()).abs().max()) <= 2
    row = levels[0, 0, size // 2].numpy()
    assert len(np.unique(row)) >= len(np.unique(((plain[0, 0, size // 2] + 1) * 127.5).round().numpy())) - 2
