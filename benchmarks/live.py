"""Live streaming (amg.live) on this machine: latency, frame rate, dropped frames and memory.

    python benchmarks/live.py [--avatar obama_clip2] [--speech musetalk_eng_60s.wav] [--seconds 60]
                              [--chunk-ms 80] [--rss-minutes 10] [--set live.lookahead=8 ...]

Uses the avatar `--avatar` in /tmp/amg-bench if it is trained there, else benchmarks/render.py's `render_bench`
(trained briefly on obama_clip2 on first use: speed does not depend on the weights).

1. Real time: the speech is fed in chunks of --chunk-ms, each when its last sample would have been spoken.
   Per frame: the latency from its first sound arriving to the frame being ready (a sound's onset is where the
   mouth starts to move for it, so this is the mouth-to-sound delay a viewer sees); median and p95 over all
   frames and over word onsets (frames where the speech probability rises past 0.5 after a pause); frames
   delivered per second of speech and how many were dropped; compute per stage (seconds per second of speech).
2. Memory: --rss-minutes of speech (the same speech looped) streamed as fast as it goes; the process's RSS
   after each minute (goal: flat).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from amg.audio.features import FRAME_HOP, SAMPLE_RATE, compute_features
from amg.config import FPS, LiveConfig, MotionOptions, config_from_dict
from amg.core.layout import Layout
from amg.live import LiveSession, chunks_in_real_time, run_live
from amg.motion.inference import motion_trained

sys.path.insert(0, str(Path(__file__).parent))
import render as render_bench  # noqa: E402  (the shared benchmark avatar)


def word_onsets(vad: np.ndarray, pause: int = 5) -> np.ndarray:
    """Frames where speech starts after at least `pause` frames without."""
    speech = vad >= 0.5
    quiet = np.convolve(~speech, np.ones(pause), "full")[: len(speech)] >= pause
    return np.flatnonzero(speech[1:] & quiet[:-1]) + 1


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_time(layout: Layout, avatar: str, speech: np.ndarray, cfg: LiveConfig, chunk_ms: float) -> dict:
    frames: list = []
    warm_up = LiveSession(layout, avatar, frames.append, MotionOptions(), cfg)
    warm_up.push(np.zeros(SAMPLE_RATE, np.float32))  # the first calls load kernels
    warm_up.finish()
    frames.clear()
    session = LiveSession(layout, avatar, frames.append, MotionOptions(), cfg, generator=warm_up.generator)
    started = time.monotonic()
    run_live(session, chunks_in_real_time(speech, chunk_ms))
    wall = time.monotonic() - started
    latency = np.array([f.latency_s for f in frames])
    onsets = word_onsets(compute_features(speech, session.features.cfg).vad)
    onsets = onsets[onsets < len(frames)]
    seconds = len(speech) / SAMPLE_RATE
    return {
        "frames": len(frames),
        "expected_frames": int(np.ceil(len(speech) / FRAME_HOP)),
        "dropped": session.dropped,
        "frames_per_s": len(frames) / wall,
        "distinct_frames_per_s": (len(frames) - session.dropped) / wall,
        "latency_median_s": float(np.median(latency)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "onsets": len(onsets),
        "onset_latency_median_s": float(np.median(latency[onsets])) if len(onsets) else float("nan"),
        "onset_latency_p95_s": float(np.percentile(latency[onsets], 95)) if len(onsets) else float("nan"),
        "compute_per_speech_s": {k: v / seconds for k, v in session.seconds.items()},
    }


def memory(layout: Layout, avatar: str, speech: np.ndarray, cfg: LiveConfig, minutes: int) -> list[float]:
    session = LiveSession(layout, avatar, lambda frame: None, MotionOptions(), cfg)
    samples_per_minute = 60 * SAMPLE_RATE
    looped = np.resize(speech, minutes * samples_per_minute)
    rss, fed = [], 0
    for chunk, _ in chunks_in_real_time(looped, 80, real_time=False):
        session.push(chunk)
        fed += len(chunk)
        if fed % samples_per_minute < len(chunk):
            rss.append(rss_mb())
    session.finish()
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avatar", default="obama_clip2")
    parser.add_argument("--speech", default="musetalk_eng_60s.wav")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=float, default=80.0)
    parser.add_argument("--rss-minutes", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="live.KEY=VALUE")
    args = parser.parse_args()

    layout = Layout(render_bench.ROOT)
    avatar = args.avatar
    if not motion_trained(layout, avatar) or not layout.gan_checkpoint(avatar).is_file():
        render_bench.ensure_avatar(layout, "obama_clip2", {"gan.steps": 20})
        avatar = render_bench.AVATAR
    overrides = {k.removeprefix("live."): yaml.safe_load(v) for k, v in (pair.split("=", 1) for pair in args.set)}
    cfg = config_from_dict(LiveConfig, overrides)
    from amg.media import load_audio

    speech = load_audio(render_bench.shared_file(f"audio/{args.speech}"))[: int(args.seconds * SAMPLE_RATE)]
    print(f"avatar {avatar}, {len(speech) / SAMPLE_RATE:.0f} s of {args.speech}, chunks of {args.chunk_ms:g} ms, {cfg}")
    result = real_time(layout, avatar, speech, cfg, args.chunk_ms)
    print(f"frames {result['frames']} of {result['expected_frames']}, dropped {result['dropped']}")
    print(
        f"delivered {result['frames_per_s']:.1f} frames/s ({result['distinct_frames_per_s']:.1f} distinct; {FPS} needed)"
    )
    print(
        f"latency median {result['latency_median_s']:.3f} s, p95 {result['latency_p95_s']:.3f} s; "
        f"at {result['onsets']} word onsets median {result['onset_latency_median_s']:.3f} s, "
        f"p95 {result['onset_latency_p95_s']:.3f} s"
    )
    print("compute per second of speech:", {k: round(v, 3) for k, v in result["compute_per_speech_s"].items()})
    if args.rss_minutes:
        rss = memory(layout, avatar, speech, cfg, args.rss_minutes)
        print("RSS (MB) after each minute of streaming:", [round(r) for r in rss])


if __name__ == "__main__":
    main()
