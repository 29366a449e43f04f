"""The avatar's generator in ONNX Runtime, fp32 against static int8 (a measurement, not a product path).

    python benchmarks/int8.py DATAROOT SPEECH AVATAR [--calibration 16] [--frames 64] [--rounds 3] [--png grid.png]

For a trained avatar and a speech: the generator's inputs of the speech's first frames, as a render builds them;
the first `--calibration` frames calibrate ONNX Runtime's static quantization (QDQ, int8 weights per output
channel, uint8 activations, min-max ranges), the next `--frames` are compared. Prints the host's CPU and its
int8 flags, the time to quantize, each engine's frames/s (rounds alternate the two; median), and how far the int8
frames are from the fp32 ones (PSNR, largest difference in levels). `--png`: three compared frames, fp32 | int8 |
their difference x8, to look at.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from precision import cpu_model

from amg.config import MotionOptions
from amg.core.layout import Layout
from amg.core.onnx_runtime import cpu_session, export_onnx
from amg.core.precision import cpu_flags
from amg.core.tensors import to_uint8
from amg.gan.inference import AvatarGenerator, FrameStream
from amg.motion.inference import predict_motion

CHUNK = 16
INT8_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8")


class Batches(CalibrationDataReader):
    """The calibration frames in batches of 4, with the generator's constant inputs."""

    def __init__(self, frames: torch.Tensor, constants: dict[str, np.ndarray]):
        self.items = iter([{"input": frames[i : i + 4].numpy()} | constants for i in range(0, len(frames), 4)])

    def get_next(self) -> dict | None:
        return next(self.items, None)


def quantized(model: bytes, calibration: torch.Tensor, constants: dict[str, np.ndarray]) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        source, prepared, out = (Path(scratch) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(model)
        # The generator's graph defeats the symbolic shape inference; ONNX's own is enough for the QDQ pass.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Batches(calibration, constants),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return out.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataroot")
    parser.add_argument("speech")
    parser.add_argument("avatar")
    parser.add_argument("--calibration", type=int, default=16, help="frames that calibrate the quantization")
    parser.add_argument("--frames", type=int, default=64, help="frames compared")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--png", type=Path, help="fp32 | int8 | difference x8 of three compared frames")
    args = parser.parse_args()
    layout = Layout(args.dataroot)
    motion = predict_motion(layout, args.speech, args.avatar, MotionOptions())
    gen = AvatarGenerator(layout, args.avatar, engine="torch", precision="fp32")
    stream = FrameStream(gen)
    stream.push(motion)
    total = min(args.calibration + args.frames, motion.n_frames)
    inputs = torch.cat([stream.inputs(min(s + CHUNK, total), final=True) for s in range(0, total, CHUNK)])
    calibration, compared = inputs[: args.calibration], inputs[args.calibration :].split(CHUNK)
    constants = {"static_code": gen.static_code, "background": gen.inputs.background}
    fp32 = export_onnx(gen.generator, inputs[:2], constants)
    arrays = {name: value.numpy() for name, value in constants.items()}
    start = time.perf_counter()
    int8 = quantized(fp32, calibration, arrays)
    quantize_s = time.perf_counter() - start
    sessions = {"fp32": cpu_session(fp32), "int8": cpu_session(int8)}
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    frames: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            start, out = time.perf_counter(), []
            for chunk in compared:
                out.append(session.run(None, {"input": chunk.numpy()} | arrays)[0])
            rates[name].append(sum(map(len, compared)) / (time.perf_counter() - start))
            frames[name] = to_uint8(torch.from_numpy(np.concatenate(out)))
    flags = cpu_flags()
    print(f"{cpu_model()}; int8 flags: {', '.join(f for f in INT8_FLAGS if f in flags) or 'none'}")
    print(
        f"{args.avatar} at {gen.size} px, {len(calibration)} calibration and {sum(map(len, compared))} compared frames"
    )
    print(f"  quantization {quantize_s:.1f} s")
    for name, values in rates.items():
        print(f"  {name}: {statistics.median(values):.1f} frames/s (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    gap = frames["fp32"].astype(np.float64) - frames["int8"]
    psnr = 10 * np.log10(255**2 / max(np.mean(gap**2), 1e-12))
    print(f"  int8 against fp32: PSNR {psnr:.2f} dB, largest difference {int(np.abs(gap).max())} levels")
    if args.png:
        picks = np.linspace(0, len(gap) - 1, 3).astype(int)
        rows = [
            np.hstack([frames["fp32"][i], frames["int8"][i], np.clip(np.abs(gap[i]) * 8, 0, 255).astype(np.uint8)])
            for i in picks
        ]
        cv2.imwrite(str(args.png), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
