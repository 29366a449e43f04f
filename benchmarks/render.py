"""Rendering speed and memory (stages 2-7), and image-GAN training speed, at 256 px.

    python benchmarks/render.py [--video obama_clip2] [--minutes 1 10] [--set gan.ngf=24 ...]

Uses an avatar of its own, `render_bench`, in /tmp/amg-bench (the clip is linked, not copied; preprocessing
and models are reused by later runs; delete its checkpoints after changing --set). Its models are trained with
the fast motion preset and a 20-step image-GAN run of the default (or --set) generator: speed does not depend
on the weights, so a briefly trained generator measures the same as a finished one.

Prints, for driving speech of the first duration: frames/s of each inference stage alone (audio features,
motion, candidate retrieval and mesh warp, conditioning, generator, face refiner, encoding; the image stages on
its first 16 s) and of the whole `render()` with and without
`--enhance` (the refiner is trained for 10 steps: its speed does not depend on its weights either); the
generator's GFLOP per frame and the fraction of the CPU's measured matmul ceiling it reaches; image-GAN training
steps/s. Then, for each duration,
the peak RSS of a fresh process running `render()` (goal: flat in the audio's length).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from amg.audio.features import features_for_audio
from amg.config import (
    AvatarConfig,
    GanConfig,
    MotionConfig,
    MotionOptions,
    PreprocessConfig,
    load_config,
    preset_overrides,
)
from amg.core.layout import Layout
from amg.media import VideoWriter, load_audio, write_wav
from amg.pipeline import RenderConfig, render, train_avatar
from amg.tracking.preprocess import preprocess

from shared_data import link_shared, shared_file

ROOT = Path("/tmp/amg-bench")
STAGE_FRAMES = 400
MOTION_FIELDS = ("expression", "rotation", "translation", "scale", "body", "landmarks", "vad")
AVATAR = "render_bench"
SPEECH = ["musetalk_eng_60s.wav", "librispeech_1320_male.mp3", "librispeech_3575_female.mp3", "hdtf_radio36.wav"]


def matmul_ceiling() -> float:
    """GFLOP/s of a large fp32 matmul (best of 10): the most this CPU's cores can do."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def speech_of(layout: Layout, minutes: float) -> str:
    """A driving speech `minutes` long, shared recordings of several voices one after another."""
    name = f"speech_{minutes:g}min"
    folder = layout.audio_dir(name)
    if not (folder / f"{name}.wav").is_file():
        pieces = [load_audio(shared_file(f"audio/{f}")) for f in SPEECH]
        joined = np.concatenate(pieces)
        total = int(minutes * 60 * 16000)
        write_wav(folder / f"{name}.wav", np.resize(joined, total), 16000)
    return name


def ensure_avatar(layout: Layout, clip: str, gan: dict) -> None:
    link_shared(f"video/{clip}.mp4", layout.video_dir(AVATAR) / f"{AVATAR}.mp4")
    fast_motion = {k: v for k, v in preset_overrides("fast").items() if k.startswith("motion.")}
    preprocess(layout, AVATAR, PreprocessConfig(preview=False))
    brief_refiner = {"enhance.steps": 10, "enhance.eval_every": 10, "enhance.max_frames": 100}
    train_avatar(layout, AVATAR, load_config(AvatarConfig, None, fast_motion | gan | brief_refiner), enhance=True)


def stage_speeds(layout: Layout, audio: str, video: str) -> dict:
    from amg.core.tensors import to_uint8
    from amg.enhance.inference import FaceEnhancer
    from amg.gan.inference import AvatarGenerator, FrameStream
    from amg.gan.networks import count_flops
    from amg.motion.inference import predict_motion

    n = {}
    t0 = time.perf_counter()
    features = features_for_audio(layout, audio, MotionConfig().features, force=True)
    n["audio features"] = time.perf_counter() - t0
    frames = len(features)
    t0 = time.perf_counter()
    motion = predict_motion(layout, audio, video)
    n["motion (expression, pose, body)"] = time.perf_counter() - t0  # features come from the cache now

    gen = AvatarGenerator(layout, video)
    # The per-stage timings of the image path hold their inputs in memory: a 16-s stretch (36 float channels
    # per 256² frame are 9.4 MB); frames/s are per frame of that stretch, end to end runs the whole speech.
    chunk = RenderConfig().chunk
    stretch = replace(motion, **{f: getattr(motion, f)[:STAGE_FRAMES] for f in MOTION_FIELDS})
    n_image = stretch.n_frames
    t0 = time.perf_counter()
    picks = gen.inputs.candidates(stretch.landmarks, stretch.rotation, stretch.translation, stretch.scale)
    for start in range(0, n_image, chunk):
        span = slice(start, start + chunk)
        gen.inputs.warped_planes(
            gen.inputs.candidate_maps(stretch.landmarks[span], stretch.body[span], picks[span]), picks[span]
        )
    n["candidate retrieval + mesh warp"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = FrameStream(gen)  # the inputs exactly as a render builds them, chunk by chunk
    stream.push(stretch)
    inputs = [stream.inputs(min(start + chunk, n_image), final=True) for start in range(0, n_image, chunk)]
    n["conditioning + warp + generator inputs"] = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        for dynamic in inputs:
            gen.generator(dynamic, gen.static_code, gen.inputs.background)
        n["generator (PyTorch)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = [gen.generate(dynamic) for dynamic in inputs]
        n["generator (ONNX Runtime)"] = time.perf_counter() - t0
    images = [f for out in outputs for f in to_uint8(out)]
    t0 = time.perf_counter()
    speech = load_audio(layout.audio_source(audio))[: n_image * 640]
    with VideoWriter("/tmp/amg-bench/encode_test.mp4", audio=speech) as w:
        for image in images:
            w.write(image)
    n["encode (H.264 + AAC)"] = time.perf_counter() - t0
    for upscale in (1, 2):
        enhancer = FaceEnhancer(layout, video, upscale)
        t0 = time.perf_counter()
        for _ in enhancer.frames(images, stretch.landmarks, motion.size):
            pass
        n[f"face refiner, upscale {upscale}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    render(layout, audio, video, MotionOptions(), RenderConfig())
    n["end to end render()"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    render(layout, audio, video, MotionOptions(), RenderConfig(enhance=True))
    n["end to end render(), --enhance"] = time.perf_counter() - t0
    flops = count_flops(gen.generator, inputs[0][:1], gen.static_code, gen.inputs.background)
    crop = torch.zeros(1, 3, enhancer.crop_size, enhancer.crop_size)
    whole_speech = (
        "audio features",
        "motion (expression, pose, body)",
        "end to end render()",
        "end to end render(), --enhance",
    )
    counts = {stage: frames if stage in whole_speech else n_image for stage in n}
    return {
        "frames": frames,
        "seconds": n,
        "counts": counts,
        "n_candidates": gen.config.n_candidates,
        "gflop_per_frame": flops / 1e9,
        "size": gen.size,
        "refiner_gflop": count_flops(enhancer.refiner, crop) / 1e9,
        "refiner_crop": enhancer.crop_size,
    }


def gan_training_speed(layout: Layout, video: str, gan: dict, steps: int = 6) -> float:
    from amg.gan.data import load_gan_data, make_references
    from amg.gan.inputs import GeneratorInputs
    from amg.gan.train import GanTrainer

    cfg = load_config(GanConfig, None, {k.removeprefix("gan."): v for k, v in gan.items()})
    data = load_gan_data(layout, video, cfg.size, AvatarConfig().holdout)
    refs = make_references(data, layout, video, cfg.bank_size)
    inputs = GeneratorInputs(refs, cfg.context, cfg.n_candidates, cfg.candidate_hysteresis)
    trainer = GanTrainer(cfg, data, inputs, layout, video)
    trainer.step(0)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        trainer.step(step)
    return steps / (time.perf_counter() - start)


def peak_rss_mb(audio: str, video: str) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of a fresh process rendering `audio` with avatar `video`.

    Read from VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child started by this (large)
    process would report this process's peak.
    """
    code = (
        "import time, json;"
        "from amg.core.layout import Layout; from amg.config import MotionOptions, RenderConfig; from amg.pipeline import render;"
        "t=time.perf_counter();"
        f"render(Layout({str(ROOT)!r}), {audio!r}, {video!r}, MotionOptions(), RenderConfig());"
        "hwm=[int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
        "print(json.dumps([hwm / 1024, time.perf_counter()-t]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rss, wall = json.loads(out.strip().splitlines()[-1])
    return rss, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default="obama_clip2")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--set", metavar="gan.KEY=VALUE", action="append", default=[], help="generator option")
    args = parser.parse_args()
    torch.set_num_threads(2)
    layout = Layout(ROOT)
    gan = {"gan.steps": 20, "gan.eval_every": 20} | dict(pair.split("=", 1) for pair in args.set)
    ensure_avatar(layout, args.video, gan)
    ceiling = matmul_ceiling()
    audio = speech_of(layout, args.minutes[0])
    speeds = stage_speeds(layout, audio, AVATAR)
    frames = speeds["frames"]
    print(f"\nInference at {speeds['size']} px, {frames} frames ({args.minutes[0]:g} min of speech), 2 threads")
    print(f"{'stage':40s} {'frames/s':>9s}")
    for stage, seconds in speeds["seconds"].items():
        print(f"{stage:40s} {speeds['counts'][stage] / seconds:9.1f}")
    warp_ms = (
        1000
        * speeds["seconds"]["candidate retrieval + mesh warp"]
        / speeds["counts"]["candidate retrieval + mesh warp"]
    )
    print(f"mesh warp of {speeds['n_candidates']} candidates: {warp_ms:.1f} ms per frame")
    print(
        f"\ngenerator: {speeds['gflop_per_frame']:.2f} GFLOP/frame; measured fp32 matmul ceiling {ceiling:.1f} GFLOP/s"
    )
    print(f"face refiner: {speeds['refiner_gflop']:.2f} GFLOP/frame on a {speeds['refiner_crop']}² face crop")
    for engine in ("PyTorch", "ONNX Runtime"):
        achieved = (
            speeds["gflop_per_frame"]
            * speeds["counts"][f"generator ({engine})"]
            / speeds["seconds"][f"generator ({engine})"]
        )
        print(f"  {engine:13s} {achieved:5.1f} GFLOP/s = {achieved / ceiling:.0%} of the ceiling")
    print(f"image-GAN training at {speeds['size']} px: {gan_training_speed(layout, AVATAR, gan):.2f} steps/s")
    print(f"\n{'speech':>8s} {'peak RSS MB':>12s} {'render s':>9s} {'frames/s':>9s}")
    for minutes in args.minutes:
        rss, wall = peak_rss_mb(speech_of(layout, minutes), AVATAR)
        print(f"{minutes:6g} m {rss:12.0f} {wall:9.1f} {minutes * 60 * 25 / wall:9.1f}")


if __name__ == "__main__":
    main()
