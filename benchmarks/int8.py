"""The avatar's generator in ONNX Runtime, fp32 (what `render.engine: auto` runs on a CPU without a bf16 engine)
against int8 (`render.engine: int8`, asked for).

    python benchmarks/int8.py DATAROOT SPEECH AVATAR [--frames 64] [--rounds 3] [--remake] [--png grid.png]

For a trained avatar and a speech: the generator's inputs of the speech's first `--frames` frames, as a render
builds them, run by both engines as AvatarGenerator loads them (int8: quantized on first use, calibrated on the
avatar's own training frames, cached beside the checkpoint; `--remake` deletes the cached one first, to time its
making). Prints the host's CPU and its int8 flags, the time to load each engine, each engine's frames/s (rounds
alternate the two; median), and how far the int8 frames are from the fp32 ones (PSNR, largest difference in
levels). `--png`: three compared frames, fp32 | int8 | their difference x8, to look at.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from amg.config import MotionOptions
from amg.core.layout import Layout
from amg.core.precision import cpu_flags, cpu_model
from amg.core.tensors import to_uint8
from amg.gan.inference import AvatarGenerator, FrameStream
from amg.motion.inference import predict_motion

CHUNK = 16
INT8_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataroot")
    parser.add_argument("speech")
    parser.add_argument("avatar")
    parser.add_argument("--frames", type=int, default=64, help="frames compared")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--remake", action="store_true", help="delete the cached int8 model first")
    parser.add_argument("--png", type=Path, help="fp32 | int8 | difference x8 of three compared frames")
    args = parser.parse_args()
    layout = Layout(args.dataroot)
    if args.remake:
        layout.gan_int8(args.avatar).unlink(missing_ok=True)
    cached = layout.gan_int8(args.avatar).is_file()
    generators, load_s = {}, {}
    for engine in ("onnxruntime", "int8"):
        start = time.perf_counter()
        generators[engine] = AvatarGenerator(layout, args.avatar, engine=engine)
        load_s[engine] = time.perf_counter() - start
    motion = predict_motion(layout, args.speech, args.avatar, MotionOptions())
    stream = FrameStream(generators["onnxruntime"])
    stream.push(motion)
    total = min(args.frames, motion.n_frames)
    chunks = [stream.inputs(min(s + CHUNK, total), final=True) for s in range(0, total, CHUNK)]
    rates: dict[str, list[float]] = {name: [] for name in generators}
    frames: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, generator in generators.items():
            start, out = time.perf_counter(), []
            for chunk in chunks:
                out.append(generator.generate(chunk))
            rates[name].append(total / (time.perf_counter() - start))
            frames[name] = to_uint8(torch.cat(out))
    flags = cpu_flags()
    print(f"{cpu_model()}; int8 flags: {', '.join(f for f in INT8_FLAGS if f in flags) or 'none'}")
    size = generators["int8"].size
    print(f"{args.avatar} at {size} px, {total} frames of {args.speech}")
    made = "read from the cache" if cached else "quantized, calibrated on its own frames, and cached"
    print(f"  loading: fp32 {load_s['onnxruntime']:.1f} s, int8 {load_s['int8']:.1f} s ({made})")
    for name, values in rates.items():
        print(f"  {name}: {statistics.median(values):.1f} frames/s (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    gap = frames["onnxruntime"].astype(np.float64) - frames["int8"]
    psnr = 10 * np.log10(255**2 / max(np.mean(gap**2), 1e-12))
    print(f"  int8 against fp32: PSNR {psnr:.2f} dB, largest difference {int(np.abs(gap).max())} levels")
    if args.png:
        picks = np.linspace(0, len(gap) - 1, 3).astype(int)
        rows = [
            np.hstack(
                [frames["onnxruntime"][i], frames["int8"][i], np.clip(np.abs(gap[i]) * 8, 0, 255).astype(np.uint8)]
            )
            for i in picks
        ]
        cv2.imwrite(str(args.png), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
