"""The render's stages one after another, each timed alone: ms per generated frame (no threads overlap them).

    python benchmarks/render_stages.py DATAROOT SPEECH AVATAR [--frames 128] [--warmup 2] [--render] [--engine E]
        [--no-native-detail]

For a trained avatar and a speech whose features are cached: the generator's inputs (conditioning, candidate
retrieval, the mesh maps, the candidates' remaps, the whole input tensor again with its join and float
conversion), the generator, its frames to uint8, the paste into the source's frame, the marks and the H.264
encoding (to a scratch file). The first `--warmup` chunks are made and not timed (a process's first chunks
first-touch their buffers: 2-4x slower at 512 px). `--render`: then the whole `render()` of the speech, its wall
and CPU seconds. `--engine`: the generator's (render.engine; auto by default). Where the avatar's crop window
holds more pixels than its crop, the face box's detail at the source's resolution (amg.gan.native: the
candidates' warps there, and the compose) is timed too, unless `--no-native-detail` (render.native_detail off,
for the whole render as well). The same script runs on older commits (it only calls the stages' public methods),
so a change is measured against its base by running both trees in turn.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from amg.config import FPS, MotionOptions, RenderConfig, trained_holdouts
from amg.core.layout import Layout
from amg.core.tensors import to_uint8
from amg.gan.inference import AvatarGenerator
from amg.gan.inputs import with_context
from amg.media import VideoWriter
from amg.media.marks import Marker
from amg.media.watermark import Payload
from amg.motion.inference import predict_motion
from amg.pipeline import render
from amg.tracking.framing import SourceFraming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataroot")
    parser.add_argument("speech")
    parser.add_argument("avatar")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="chunks made before the timed ones")
    parser.add_argument("--render", action="store_true", help="time the whole render() afterwards")
    parser.add_argument("--engine", default="auto", help="render.engine: auto, torch, onnxruntime or int8")
    parser.add_argument("--no-native-detail", action="store_true", help="render.native_detail off")
    args = parser.parse_args()
    layout = Layout(args.dataroot)
    motion = predict_motion(layout, args.speech, args.avatar, MotionOptions())
    cfg = RenderConfig(engine=args.engine)
    gen = AvatarGenerator(layout, args.avatar, engine=cfg.engine)
    seconds: dict[str, float] = {}
    detail = None
    if hasattr(cfg, "native_detail"):  # older commits have none
        cfg = RenderConfig(engine=args.engine, native_detail=not args.no_native_detail)
        if cfg.native_detail:
            started = time.perf_counter()
            detail = gen.native_detail(layout, args.avatar)
            seconds["(once) native detail's bank"] = time.perf_counter() - started
    inputs = gen.inputs
    first = min(args.warmup * cfg.chunk, motion.n_frames - 1)
    n = min(args.frames, motion.n_frames - first)

    def timed(stage: str, work):
        start = time.perf_counter()
        result = work()
        if not warming:
            seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
        return result

    m, previous, crops = motion, None, []
    for start in range(0, first + n, cfg.chunk):
        warming = start < first
        stop = min(start + cfg.chunk, first + n)
        span = slice(start, stop)
        frames = with_context(start, stop, inputs.context, m.n_frames)
        conditioning = timed("conditioning", lambda: inputs.render(m.landmarks[frames], m.body[frames]))
        picks = timed(
            "retrieval",
            lambda: inputs.candidates(
                m.landmarks[span], m.rotation[span], m.translation[span], m.scale[span], previous=previous
            ),
        )
        previous = picks[-1]
        maps = timed("mesh maps", lambda: inputs.candidate_maps(m.landmarks[span], m.body[span], picks))
        timed("remaps alone", lambda: inputs.warped_planes(maps, picks))
        dynamic = timed("input tensor (remaps, join, float)", lambda: inputs.dynamic(conditioning, maps, picks))
        with torch.no_grad():
            out = timed("generator", lambda: gen.generate(dynamic))
        frames_out = timed("to uint8", lambda: to_uint8(out))
        if detail is not None:
            warped = timed("native detail: warps", lambda: detail.prepare(m.landmarks[span], maps, picks))
            frames_out = timed(
                "native detail: compose", lambda: [detail.compose(crop, warped, t) for t, crop in enumerate(frames_out)]
            )
        crops.extend([] if warming else frames_out)
    warming = False
    holdout = max(trained_holdouts(layout, args.avatar).values(), default=0.0)
    framing = timed("(once) backdrop bank", lambda: SourceFraming.of(layout, args.avatar, holdout, cfg.feather))
    paste = framing.paster(motion.body[first:])
    pasted = timed("paste", lambda: [paste(crop) for crop in crops])
    marker = Marker(Payload.of(args.avatar, "render_stages"), cfg.label or None)
    marked = timed("marks", lambda: [marker(frame, i) for i, frame in enumerate(pasted)])
    with tempfile.TemporaryDirectory() as scratch:
        silence = np.zeros(16000 * (n // FPS + 1), np.float32)
        with VideoWriter(Path(scratch) / "stages.mp4", FPS, silence, crf=cfg.crf) as writer:
            timed("encode", lambda: [writer.write(frame) for frame in marked])
    print(
        f"{args.avatar} at {gen.size} px, {gen.precision.name}, engine {gen.engine}, {torch.get_num_threads()} threads, "
        f"{n} frames"
    )
    for stage, total in seconds.items():
        once = stage.startswith("(once)")
        print(f"  {stage:36s} {1000 * total / (1 if once else n):8.2f} ms{'' if once else ' per frame'}")
    if args.render:
        del crops, pasted, marked, gen
        wall, cpu = time.perf_counter(), time.process_time()
        render(layout, args.speech, args.avatar, MotionOptions(), cfg)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"  whole render() of {motion.n_frames} frames: {wall:.1f} s, {cpu:.1f} s of CPU")


if __name__ == "__main__":
    main()
