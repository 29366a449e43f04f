"""The invisible watermark (amg.media.watermark) against what happens to videos on the way to viewers, and what
it costs.

    python benchmarks/marks.py [--clips obama_clip2 kristi_noem andrew_ng_clip1 cnn_anchor_71s] [--seconds 20]
    python benchmarks/marks.py --generated DATAROOT/output_data/*/generated_video.mp4
    python benchmarks/marks.py --held-out DATAROOT NAME
    python benchmarks/marks.py --render DATAROOT AUDIO NAME [--rounds 2]


For each clip of ../shared/data/video (real footage at 256 px: the watermark works on pixels, and a real
picture is what it must get through), marked and written as `amg run` writes (CRF 18, x264's veryfast), then
transformed: H.264 at CRF 18 and CRF 30, scaled to 50 %, cropped by 10 % (5 % off each side), converted to 30
fps, the label's corner band cropped off, and all of these at once; the detection rate of its 5-s windows and
of the whole stretch, with the scores, and whether the ids were read right (read wrong, or not read) from the whole stretch and from each window. Then
the false alarms: every real video of ../shared/data/video, unmarked, whole (first 15 s) and in 5-s windows,
as they are and re-encoded at CRF 30, each also searched for DECOYS keyed random patterns that no video carries (how
often chance reaches the threshold, measured on thousands of searches instead of the 198 real ones). Then the cost: PSNR of marked against unmarked frames, and the time to
mark a frame at 256 px, 720p and 1080p.

With --held-out DATAROOT NAME, the cost where the issue counts it: `amg eval`'s held-out scores (PSNR and SSIM of
the whole crop and the face box against the real frames) of a trained avatar's self-driven tail, unmarked and
marked as `amg run` marks, as generated and after `amg run`'s CRF-18 pass.

With --render DATAROOT AUDIO NAME, the cost in speed: `amg run`'s render end to end, marked as shipped and with
the marks (watermark and label) left out, alternated in one process.

With --generated, AMG's own outputs instead (already marked as `amg run` writes them): each transformed as above
and its 5-s windows detected, the ids read from the whole file checked against its metadata's avatar and render.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from fractions import Fraction
from itertools import islice
from pathlib import Path
from unittest import mock

import av
import cv2
import numpy as np

from amg.audio import features_for_video
from amg.config import FPS, AvatarConfig, MotionConfig, MotionOptions, RenderConfig, read_saved_config
from amg.core import images
from amg.core.layout import Layout
from amg.evaluation.evaluate import held_out_start, self_driven
from amg.gan.inference import AvatarGenerator
from amg.media import iter_frames, resized_frames
from amg.media.provenance import read_tags
from amg.media.watermark import CELLS, THRESHOLD, Detector, Embedder, Payload, detect
from amg.pipeline import render
from amg.tracking.boxes import face_boxes
from amg.tracking.tracks import Tracks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
WINDOW_S = 5.0
DECOYS = 60


def encoded(frames: list[np.ndarray], fps: float, crf: int, preset: str = "medium") -> list[np.ndarray]:
    """`frames` through H.264 (yuv420p, even sizes) at `crf` and x264's `preset`, decoded again at `fps`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.mp4"
        height, width = (d - d % 2 for d in frames[0].shape[:2])
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            for frame in frames:
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]))
                container.mux(stream.encode(picture))
            container.mux(stream.encode())
        return list(iter_frames(path, fps))


def scaled(frames, factor):
    return [cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) for f in frames]


def cropped(frames, share):
    """`share` of each dimension cut off, half on each side."""
    height, width = frames[0].shape[:2]
    dy, dx = int(height * share / 2), int(width * share / 2)
    return [f[dy : height - dy, dx : width - dx] for f in frames]


def without_label_band(frames, share=0.12):
    """The bottom band cut off, where the visible label sits."""
    return [f[: f.shape[0] - int(f.shape[0] * share)] for f in frames]


def at_30_fps(frames):
    """25 fps → 30 fps by repeating frames, as a converter does."""
    return [frames[min(int(i * 25 / 30), len(frames) - 1)] for i in range(len(frames) * 30 // 25)]


TRANSFORMS = {  # name: (frames → frames, frame rate after, CRF)
    "H.264 CRF 18": (lambda f: f, 25, 18),
    "H.264 CRF 30": (lambda f: f, 25, 30),
    "scaled to 50%": (lambda f: scaled(f, 0.5), 25, 18),
    "cropped 10%": (lambda f: cropped(f, 0.10), 25, 18),
    "30 fps": (at_30_fps, 30, 18),
    "label band cropped": (without_label_band, 25, 18),
    "all at once (CRF 30)": (lambda f: at_30_fps(without_label_band(cropped(scaled(f, 0.5), 0.10))), 30, 30),
}


def frames_of(clip: Path, seconds: float, size: int | None = 256) -> list[np.ndarray]:
    frames = islice(iter_frames(clip), int(seconds * 25))
    return [f if size is None else cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]


def windows(frames: list, fps: float) -> list[list]:
    n = int(WINDOW_S * fps)
    return [frames[i : i + n] for i in range(0, len(frames) - n + 1, n)]


def robustness(clips: list[str], seconds: float) -> dict:
    results: dict = {}
    for name in clips:
        original = frames_of(SHARED / f"{name}.mp4", seconds)
        payload = Payload.of(name, "benchmark")
        embed = Embedder(payload)
        # Written as `amg run` writes (CRF 18, x264's veryfast): what a viewer's copy starts from. Transforming the
        # marked frames themselves skipped that pass, which costs all at once most (RESULTS, "The watermark").
        marked = encoded([embed(f, i / 25) for i, f in enumerate(original)], 25, 18, "veryfast")
        for label, (transform, fps, crf) in TRANSFORMS.items():
            seen = encoded(transform(marked), fps, crf)
            parts = [detect(w, fps) for w in windows(seen, fps)]
            whole = detect(seen, fps)
            row = results.setdefault(label, {"windows": 0, "found": 0, "scores": [], "whole": [], "window_ids": []})
            row["windows"] += len(parts)
            row["found"] += sum(p.found for p in parts)
            row["scores"] += [round(p.score, 2) for p in parts]
            row["window_ids"] += [ids_read(p, payload) for p in parts]
            row["whole"].append((name, round(whole.score, 2), whole.found, ids_read(whole, payload), whole.id_score))
            print(
                name,
                label,
                [round(p.score, 1) for p in parts],
                [ids_read(p, payload) for p in parts],
                "whole",
                round(whole.score, 1),
                ids_read(whole, payload),
                round(whole.id_score, 1),
                flush=True,
            )
    return results


def generated_robustness(paths: list[Path]) -> dict:
    """Detection in AMG's own outputs after each transform: 5-s windows found, and the whole file's ids."""
    results: dict = {}
    for path in paths:
        with av.open(str(path)) as container:
            tags = read_tags(dict(container.metadata))
        payload = Payload.of(str(tags.get("avatar")), str(tags.get("render_id"))) if tags else None
        frames = list(iter_frames(path, 25))
        for label, (transform, fps, crf) in TRANSFORMS.items():
            seen = encoded(transform(frames), fps, crf)
            parts = [detect(w, fps) for w in windows(seen, fps)]
            whole = detect(seen, fps)
            row = results.setdefault(label, {"windows": 0, "found": 0, "scores": [], "whole": []})
            row["windows"] += len(parts)
            row["found"] += sum(p.found for p in parts)
            row["scores"] += [round(p.score, 2) for p in parts]
            row["whole"].append((path.parent.name, round(whole.score, 2), whole.found, ids_read(whole, payload)))
            print(
                path.parent.name,
                label,
                [round(p.score, 1) for p in parts],
                "whole",
                round(whole.score, 1),
                ids_read(whole, payload),
                flush=True,
            )
    return results


def ids_read(result, payload: Payload | None) -> str:
    return "unread" if result.payload is None else "right" if result.payload == payload else "WRONG"


def false_alarms(seconds: float = 15.0) -> dict:
    scores, alarms, chance = [], [], []
    decoys = decoy_patterns()
    for path in sorted(SHARED.glob("*.mp4")) + sorted(SHARED.glob("*.mpg")):
        frames = frames_of(path, seconds, size=None)
        if max(frames[0].shape[:2]) > 720:
            frames = scaled(frames, 0.5)  # a smaller copy: the same picture, decoded faster
        for clip in (frames, encoded(frames, 25, 30)):
            for part in [clip, *windows(clip, 25)]:
                detector = Detector()
                for index, frame in enumerate(part):
                    detector.add(frame, index / 25)
                result = detector.result()
                scores.append(result.score)
                chance += detector.scores(decoys)
                if result.found:
                    alarms.append((path.name, round(result.score, 2)))
        print(path.name, "max score so far", round(max(scores), 2), flush=True)
    return {
        "tests": len(scores),
        "false_alarms": alarms,
        "max_score": max(scores),
        "median": statistics.median(scores),
        "decoy_searches": len(chance),
        "decoy_rate_at_threshold": float(np.mean(np.array(chance) >= THRESHOLD)),
        "decoy_99.9th_percentile": float(np.percentile(chance, 99.9)),
        "decoy_max": max(chance),
    }


def decoy_patterns() -> np.ndarray:
    """(DECOYS, CELLS, CELLS) keyed random patterns of zero mean and unit energy per cell, as the
    synchronisation pattern is made."""
    cells = np.random.default_rng(2026).choice([-1.0, 1.0], (DECOYS, CELLS, CELLS))
    cells -= cells.mean(axis=(1, 2), keepdims=True)
    return cells / cells.std(axis=(1, 2), keepdims=True)


def cost(clip: str) -> dict:
    original = frames_of(SHARED / f"{clip}.mp4", 10.0)
    marked, ms = marked_and_timed(original, clip)
    mse = float(np.mean([(m.astype(np.float64) - f) ** 2 for m, f in zip(marked, original)]))
    result = {"mse_levels2": mse, "psnr_marked_vs_unmarked_db": 10 * np.log10(255**2 / mse), "ms_per_frame": ms}
    for width, height in ((1280, 720), (1920, 1080)):
        large = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in original[:100]]
        result[f"ms_per_{height}p_frame"] = marked_and_timed(large, clip)[1]
    return result


def held_out_cost(root: Path, name: str) -> dict:
    """`amg eval`'s held-out image scores of avatar `name` (trained, in DATAROOT `root`), unmarked and marked,
    as generated and after the CRF-18 pass every `amg run` output takes: the watermark's cost in the numbers
    the issue bounds (0.1 dB)."""
    layout = Layout(root)
    tracks = Tracks.load(layout.tracks(name))
    start = held_out_start(tracks.n_frames, AvatarConfig().holdout)
    motion_cfg = read_saved_config(MotionConfig, layout.motion_config(name)) or MotionConfig()
    features = features_for_video(layout, name, motion_cfg.features, tracks.n_frames)
    motion = self_driven(layout, name, tracks, start, features).motion
    generator = AvatarGenerator(layout, name)
    generated = list(generator.frames(motion))
    real = list(islice(resized_frames(layout.frames_video(name), generator.size), start, tracks.n_frames))
    marked = marked_and_timed(generated, name)[0]
    boxes = {"face": face_boxes(motion.landmarks, tracks.size, generator.size)}
    versions = {"unmarked": generated, "marked": marked}
    versions |= {f"{k}, CRF 18": encoded(v, FPS, 18, "veryfast") for k, v in list(versions.items())}
    return {k: images.mean_frame_scores(np.stack(v), np.stack(real), boxes) for k, v in versions.items()}


def render_cost(root: Path, audio: str, name: str, rounds: int) -> dict:
    """Frames per second of `amg run`'s render of `audio` by avatar `name` end to end (motion, generation, paste,
    H.264, the manifest), marked as shipped and with the marks left out: after one render that warms the caches,
    `rounds` pairs in alternating order (ABBA), so that neither version always runs first."""
    layout = Layout(root)
    path = render(layout, audio, name, MotionOptions(), RenderConfig())
    seconds: dict[str, list[float]] = {"marked": [], "unmarked": []}
    for round_ in range(rounds):
        for version in sorted(seconds, reverse=round_ % 2 == 1):
            unmarked = mock.patch("amg.media.output.Marker", lambda payload, label: lambda frame, index: frame)
            with unmarked if version == "unmarked" else nullcontext():
                start = time.perf_counter()
                render(layout, audio, name, MotionOptions(), RenderConfig())
                seconds[version].append(time.perf_counter() - start)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, size = stream.frames, f"{stream.width}x{stream.height}"
    fps = {version: [round(frames / t, 2) for t in times] for version, times in seconds.items()}
    slower = statistics.median(seconds["marked"]) / statistics.median(seconds["unmarked"]) - 1
    return {"frames": frames, "size": size, "frames_per_second": fps, "marked_slower_by": round(slower, 4)}


def marked_and_timed(frames: list[np.ndarray], clip: str) -> tuple[list[np.ndarray], float]:
    """`frames` marked in order, and the milliseconds each took (the pattern for their size made beforehand)."""
    embed = Embedder(Payload.of(clip, "benchmark"))
    embed(frames[0], 0.0)  # the pattern for this size, made once
    embed = Embedder(Payload.of(clip, "benchmark"))
    start = time.perf_counter()
    marked = [embed(f, i / 25) for i, f in enumerate(frames)]
    return marked, (time.perf_counter() - start) / len(frames) * 1000


def ids_summary(row: dict) -> str:
    """How often the ids were read right from the whole stretches and from the windows, and any read wrong."""
    whole = [w[3] for w in row["whole"]]
    wrong = whole.count("WRONG") + row["window_ids"].count("WRONG")
    windows = row["window_ids"]
    return f"whole {whole.count('right')}/{len(whole)}, windows {windows.count('right')}/{len(windows)}, wrong {wrong}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--clips", nargs="+", default=["obama_clip2", "kristi_noem", "andrew_ng_clip1", "cnn_anchor_71s"]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--generated", nargs="+", type=Path, help="AMG outputs to transform and detect instead")
    parser.add_argument("--held-out", nargs=2, metavar=("DATAROOT", "NAME"), help="the cost in held-out scores")
    parser.add_argument("--render", nargs=3, metavar=("DATAROOT", "AUDIO", "NAME"), help="the cost in speed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.render:
        result = render_cost(Path(args.render[0]), args.render[1], args.render[2], args.rounds)
        shown = result
    elif args.held_out:
        result = held_out_cost(Path(args.held_out[0]), args.held_out[1])
        shown = result
    elif args.generated:
        result = generated_robustness(args.generated)
        shown = {
            k: f"{v['found']}/{v['windows']} windows, min {min(v['scores'], default=0)}" for k, v in result.items()
        }
    else:
        if not SHARED.is_dir():
            raise SystemExit(f"{SHARED} is missing: this benchmark reads the shared real videos.")
        result = {"cost": cost(args.clips[0]), "robustness": robustness(args.clips, args.seconds)}
        result["false_alarms"] = false_alarms()
        shown = {
            "cost": result["cost"],
            "detected": {k: f"{v['found']}/{v['windows']} windows" for k, v in result["robustness"].items()},
            "ids": {k: ids_summary(v) for k, v in result["robustness"].items()},
            "false_alarms": result["false_alarms"],
        }
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
