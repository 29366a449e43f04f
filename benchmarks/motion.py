"""Stage 3 quality and speed: lip-sync on the avatar's held-out tail and across speakers, head motion, timing.

    python benchmarks/motion.py [--video obama_clip2] [--cross kristi_noem obama_clip1 hdtf_katie_hill_8s]
                                [--blocks mel,embedding,vad,energy mel,vad,energy embedding,vad,energy]
                                [--eyes obama_clip2 andrew_ng_clip1 kristi_noem] [--eyes-only]
                                [--speeds-only] [--speed-videos obama_clip2 ...] [--speeds none 0.9,1.1 ...]
                                [--pose2face-only] [--pose2face-videos obama_clip2 ...]
                                [--amplitude-only] (with --speed-videos)
                                [--voices-only] [--voices audio/jfk_inaugural_11s.flac ...] (with --speed-videos)

For each audio-feature variant: trains Audio→Expression on the first 85% of the avatar video and reports,
on the held-out tail, the lip landmark error (px at 256) and the mouth-opening correlation, next to the two
baselines (mean expression, nearest-neighbour audio lookup). Cross-speaker lip-sync: the avatar is driven by
another person's speech from a clip whose own mouth was tracked; the correlation of the avatar's predicted
mouth opening with that person's tracked opening (best lag within ±2 frames) says how well lip motion
transfers across voices. Then head motion (default features) and inference speed.
Eyes (--eyes): each avatar (motion models trained with the defaults, cached) says 60 s of other speech with
five seeds, then 30 s of silence: blink rate, blink duration and eye-opening quantiles against its own tracked
training frames, blinks with --blinks off, how far the eye model moves the lips (it must not), and in silence
the mouth opening, the blinks and the head motion against speech.
Speed perturbation (--speeds-only): Audio→Expression trained on each clip with each set of training speeds
("none": the speech as recorded), two seeds each: held-out lip error, mouth-opening correlation and the
predicted opening's spread over the real one's.
Calibrated amplitude (--amplitude-only, on --speed-videos): Audio→Expression trained without and with
motion.expression.calibrate_amplitude: the held-out opening's mean, spread and speed over the tracked one's,
the correlation, and the timing of the predicted mouth against the tracked one.
The voice's amplitude (--voices-only, on --speed-videos, driven by --voices: shared speech files, or videos whose
speech is read): Audio→Expression at the defaults; the person's tracked opening spread over the speaking frames
of the training part and of the held-out tail, and for the tail's own speech and each voice the calibrated
prediction's spread and the gain a render applies (amg.motion.expression.inference.VoiceSpread), in head units.
Head pose → face (--pose2face-only): the held-out error of the jaw line, of the lower face away from the lips
and of the lips, the lip-sync network's alone and with the pose's offsets (amg.motion.pose2face) added.
Clips are linked, not copied, into a temporary DATAROOT under /tmp/amg-bench (kept, so re-runs skip
preprocessing).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from amg.audio.features import compute_features, features_for_video
from amg.config import AudioFeatureConfig, AvatarConfig, EyesConfig, MotionConfig, MotionOptions, PreprocessConfig
from amg.core.checkpoints import TrainingRun, is_finished
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.evaluation.sync import lagged_correlation
from amg.media import load_audio, write_wav
from amg.motion.data import load_motion_data
from amg.motion.expression.inference import Audio2ExpressionModel
from amg.motion.expression.train import (
    baseline_predictions,
    evaluate_expressions,
    lip_landmarks,
    speaking_spread,
    train_audio2expression,
)
from amg.motion.eyes import EyeModel, blink_statistics, upper_face_weights
from amg.motion.inference import predict_motion
from amg.motion.pose import inference as pose_model
from amg.motion.pose import train as headpose
from amg.motion.pose.inference import PoseSequence
from amg.motion.pose2face import Pose2Face, lip_distance_gain
from amg.motion.train import train_motion
from amg.tracking import fitting, topology
from amg.tracking.preprocess import preprocess
from amg.tracking.tracks import Tracks

from shared_data import SHARED, link_shared, shared_file

HOLDOUT = AvatarConfig().holdout  # every stage holds out the same tail

ROOT = Path("/tmp/amg-bench")


def prepare(layout: Layout, clip: str) -> None:
    link_shared(f"video/{clip}.mp4", layout.video_dir(clip) / f"{clip}.mp4")
    preprocess(layout, clip, PreprocessConfig(preview=False))


def cross_speaker_corr(layout: Layout, avatar: str, model_path: Path, other: str, cfg: AudioFeatureConfig) -> float:
    """Drive the avatar with `other`'s speech; correlate its predicted mouth opening with `other`'s tracked one."""
    other_tracks = Tracks.load(layout.tracks(other))
    features = compute_features(load_audio(layout.audio_wav(other)), cfg, other_tracks.n_frames)
    data = load_motion_data(layout, avatar, cfg, HOLDOUT)
    coeffs = Audio2ExpressionModel(model_path)(features)
    # Pose the predicted expressions with the avatar's first-frame pose: only the mouth matters here.
    landmarks = lip_landmarks(data, coeffs, np.zeros(len(coeffs), int))
    opening, other_opening = topology.mouth_opening(landmarks), topology.mouth_opening(other_tracks.landmarks)
    return float(lagged_correlation(opening, other_opening, 2)[1].max())  # the best lag within ±2 frames


def speech_audio(layout: Layout, name: str, samples: np.ndarray) -> str:
    folder = layout.audio_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / f"{name}.wav", samples, 16000)
    return name


def head_amplitude(motion) -> float:
    """Mean standard deviation of yaw, pitch and roll (degrees)."""
    pose = pose_model.PoseSequence(motion.rotation, motion.translation, motion.scale).head_pose()
    return float(pose.euler_degrees().std(0).mean())


def eyes_section(layout: Layout, clips: list[str]) -> None:
    other = speech_audio(layout, "musetalk60", load_audio(SHARED / "audio" / "musetalk_eng_60s.wav"))
    quiet = np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32) * 1e-4
    silence = speech_audio(layout, "silence30", quiet)
    cfg = EyesConfig()
    print("## Eyes, brows and gaze: 60 s of other speech (musetalk_eng_60s), 5 seeds; then 30 s of silence")
    print(
        "| avatar | blinks/min tracked | generated (seeds) | blink frames tracked / generated | opening q05 / q50 "
        "tracked | generated | min tracked / generated | blinks, --blinks off | lips moved by the eyes (px) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    silent_rows = []
    for clip in clips:
        train_motion(layout, clip, MotionConfig(), TrainingRun(HOLDOUT))
        model = EyeModel.load(layout.eye_model(clip))
        tracks = Tracks.load(layout.tracks(clip))
        train, _ = held_out_split(tracks.n_frames, HOLDOUT)
        tracked = blink_statistics(topology.eye_opening(tracks.landmarks[train]), model.open_median, cfg)
        stats_of = lambda motion: blink_statistics(topology.eye_opening(motion.landmarks), model.open_median, cfg)  # noqa: E731
        runs = [predict_motion(layout, other, clip, MotionOptions(seed=seed)) for seed in range(5)]
        stats = [stats_of(m) for m in runs]
        off = predict_motion(layout, other, clip, MotionOptions(seed=0, blinks="off"))
        lips = np.asarray(topology.LIPS)
        moved = np.abs(runs[0].landmarks[:, lips] - off.landmarks[:, lips]).max() * 256 / tracks.size
        rates = [s["blinks_per_minute"] for s in stats]
        mean = lambda key: float(np.nanmean([s[key] for s in stats]))  # noqa: E731
        print(
            f"| {clip} | {tracked['blinks_per_minute']:.1f} | {np.mean(rates):.1f} ({min(rates):.0f}-{max(rates):.0f}) "
            f"| {tracked['blink_frames_median']:.0f} / {mean('blink_frames_median'):.1f} "
            f"| {tracked['opening_q05']:.3f} / {tracked['opening_q50']:.3f} | {mean('opening_q05'):.3f} / "
            f"{mean('opening_q50'):.3f} | {tracked['opening_min']:.3f} / {mean('opening_min'):.3f} "
            f"| {stats_of(off)['blinks_per_minute'] * len(off.vad) / 25 / 60:.0f} | {moved:.4f} |"
        )
        quiet_motion = predict_motion(layout, silence, clip, MotionOptions(seed=0))
        own_silence = features_for_video(layout, clip, MotionConfig().features, tracks.n_frames).vad < 0.2
        allowed = (
            np.percentile(topology.mouth_opening(tracks.landmarks)[own_silence], 95) if own_silence.any() else np.nan
        )
        silent_rows.append(
            f"| {clip} | {topology.mouth_opening(quiet_motion.landmarks).max():.2f} / {allowed:.2f} "
            f"| {stats_of(quiet_motion)['blinks_per_minute'] / 6:.1f} "
            f"| {head_amplitude(quiet_motion) / head_amplitude(runs[0]):.2f} |"
        )
    print(
        "\n| 30 s of silence | mouth opening max / own silent frames' p95 (px) | blinks per 10 s | head motion ÷ speaking |"
    )
    print("|---|---|---|---|")
    print("\n".join(silent_rows))
    print()


def opening_spread_ratio(data, model_path: Path, frames: slice) -> float:
    """Spread (std) of the predicted mouth opening over the real one's on `frames`: below 1, the mouth moves less."""
    predicted = Audio2ExpressionModel(model_path)(data.features)[frames]
    real = topology.mouth_opening(lip_landmarks(data, data.tracks.expression[frames], frames))
    return float(topology.mouth_opening(lip_landmarks(data, predicted, frames)).std() / real.std())


def speeds_section(layout: Layout, clips: list[str], variants: list[str], seeds: int = 2) -> None:
    """Held-out lip error, opening correlation and opening spread of Audio→Expression trained with each set of
    speeds."""
    print("## Audio→Expression with speed perturbation (held-out tail = last 15%; mean of seeds 0-1)")
    print("| clip | training speeds | lips px | opening r | opening spread / real |\n|---|---|---|---|---|")
    for clip in clips:
        data = load_motion_data(layout, clip, MotionConfig().features, HOLDOUT)
        for variant in variants:
            speeds = () if variant == "none" else tuple(float(s) for s in variant.split(","))
            runs = []
            for seed in range(seeds):
                cfg = replace(MotionConfig().expression, speeds=speeds, seed=seed)
                path = ROOT / "a2e_speeds.pt"
                path.unlink(missing_ok=True)
                metrics = train_audio2expression(data, cfg, path, None)
                spread = opening_spread_ratio(data, path, data.split[1])
                runs.append((metrics["lips_px"], metrics["opening_corr"], spread))
            lips, corr, spread = np.mean(runs, axis=0)
            print(f"| {clip} | {variant} | {lips:.3f} | {corr:.3f} | {spread:.2f} |", flush=True)
    print()


def amplitude_section(layout: Layout, clips: list[str]) -> None:
    """The lip-sync network's mouth on the held-out tail without and with the calibrated amplitude: the predicted
    opening's mean, spread and speed over the tracked one's, the correlation, and its timing (the lag of best
    correlation of the openings' frame-to-frame changes, refined to a fraction of a frame; + = late)."""
    print("## Audio→Expression: calibrated amplitude (held-out tail = last 15%; default preset)")
    print(
        "| clip | calibration | gain | opening mean / real | spread / real | speed / real | opening r | lag (frames) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for clip in clips:
        data = load_motion_data(layout, clip, MotionConfig().features, HOLDOUT)
        _, val = data.split
        real = topology.mouth_opening(lip_landmarks(data, data.tracks.expression[val], val))
        for calibrate in (False, True):
            path = ROOT / f"a2e_amplitude_{clip}_{calibrate}.pt"
            path.unlink(missing_ok=True)
            train_audio2expression(data, replace(MotionConfig().expression, calibrate_amplitude=calibrate), path, None)
            model = Audio2ExpressionModel(path)
            opening = topology.mouth_opening(lip_landmarks(data, model(data.features)[val], val))
            lag = subframe_lag(np.diff(real), np.diff(opening))
            print(
                f"| {clip} | {'on' if calibrate else 'off'} | {model.gain:.2f} | {opening.mean() / real.mean():.2f} "
                f"| {opening.std() / real.std():.2f} | {np.abs(np.diff(opening)).mean() / np.abs(np.diff(real)).mean():.2f} "
                f"| {np.corrcoef(real, opening)[0, 1]:.2f} | {lag:+.2f} |",
                flush=True,
            )
    print()


def voices_section(layout: Layout, clips: list[str], voices: list[str]) -> None:
    """Per avatar: the person's tracked opening spread over speaking frames (training part / held-out tail), and
    the calibrated lip-sync's spread and the render's voice gain for the tail's own speech and each voice."""
    names = [Path(v).stem for v in voices]
    print("## Audio→Expression: the voice's amplitude (speaking frames, head units; spread, gain)")
    print(f"| clip | tracked, training part / tail | own tail | {' | '.join(names)} |")
    print(f"|---|---|---|{'---|' * len(voices)}")
    for clip in clips:
        data = load_motion_data(layout, clip, MotionConfig().features, HOLDOUT)
        train, val = data.split
        path = ROOT / f"a2e_voices_{clip}.pt"
        if not is_finished(path):
            train_audio2expression(data, MotionConfig().expression, path, None)
        model = Audio2ExpressionModel(path)
        spreads = [speaking_spread(data, model.gauge, part) for part in (train, val)]
        speeches = [data.features.take(val)] + [
            compute_features(load_audio(shared_file(voice)), data.feature_cfg) for voice in voices
        ]
        cells = []
        for features in speeches:
            voice = model.voice_of(features)
            cells.append(f"{voice.std:.3f}, x{model.voice_gain(voice):.2f}")
        print(f"| {clip} | {spreads[0]:.3f} / {spreads[1]:.3f} | {' | '.join(cells)} |", flush=True)
    print()


def subframe_lag(reference: np.ndarray, follower: np.ndarray, max_lag: int = 5) -> float:
    """The lag of best correlation, refined by a parabola through the peak and its neighbours."""
    lags, corr = lagged_correlation(reference, follower, max_lag)
    best = int(np.clip(np.argmax(corr), 1, len(corr) - 2))
    below, peak, above = corr[best - 1 : best + 2]
    curvature = below - 2 * peak + above
    return float(lags[best] + (0.5 * (below - above) / curvature if curvature < 0 else 0.0))


def pose2face_section(layout: Layout, clips: list[str]) -> None:
    """Held-out error of the lip-sync network's face away from the lips (where the head pose moves it), without
    and with amg.motion.pose2face, both fitted on the first 85% only."""
    print("## head pose → face (held-out tail = last 15%; lip-sync network seed 0; px at 256)")
    print("| clip | pose R² (train / tail) | jaw line: lip-sync / + pose | lower face off the lips | lips |")
    print("|---|---|---|---|---|")
    cfg = MotionConfig()
    for clip in clips:
        data = load_motion_data(layout, clip, cfg.features, HOLDOUT)
        train, val = data.split
        path = ROOT / f"a2e_pose2face_{clip}.pt"
        if not is_finished(path):
            train_audio2expression(data, cfg.expression, path, None)
        face_model, tracks = data.face_model, data.tracks
        model = Pose2Face.fit(tracks, face_model, train, cfg.pose2face)
        poses = PoseSequence.from_tracks(tracks)
        speech = fitting.decode(face_model, Audio2ExpressionModel(path)(data.features))
        truth = fitting.decode(face_model, tracks.expression)
        explained = [pose_r2(truth, model, poses, train, frames) for frames in (train, val)]
        image = poses.head_pose().to_image
        lower = upper_face_weights(face_model.neutral) < 1
        regions = {
            "jaw": np.intersect1d(topology.FACE_OVAL, np.flatnonzero(lower)),
            "off": np.flatnonzero(lower & (lip_distance_gain(face_model.neutral) > 0)),
            "lips": np.asarray(topology.LIPS),
        }

        def error(shapes: np.ndarray, points: np.ndarray) -> float:
            gap = image(shapes)[val][:, points, :2] - image(truth)[val][:, points, :2]
            return float(np.linalg.norm(gap, axis=-1).mean() * 256 / tracks.size)

        cells = [f"{error(speech, regions[k]):.2f} / {error(speech + model(poses), regions[k]):.2f}" for k in regions]
        print(f"| {clip} | {explained[0]:.2f} / {explained[1]:.2f} | " + " | ".join(cells) + " |", flush=True)
    print()


def pose_r2(truth: np.ndarray, model: Pose2Face, poses: PoseSequence, train: slice, frames: slice) -> float:
    """Fraction of the variance (about the training mean) of the coupled points' shapes on `frames` that the
    model's offsets explain (it reaches its full weight there only where its gain is 1)."""
    points = model.points
    centred = truth[frames][:, points] - truth[train][:, points].mean(axis=0)
    residual = centred - model(poses.take(frames))[:, points]
    return float(1 - (residual**2).sum() / (centred**2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default="obama_clip2")
    parser.add_argument("--eyes", nargs="*", default=["obama_clip2", "andrew_ng_clip1", "kristi_noem"])
    parser.add_argument("--eyes-only", action="store_true", help="only the eyes section")
    parser.add_argument("--speeds-only", action="store_true", help="only the speed perturbation section")
    parser.add_argument("--pose2face-only", action="store_true", help="only the head pose → face section")
    parser.add_argument("--amplitude-only", action="store_true", help="only the calibrated amplitude section")
    parser.add_argument("--voices-only", action="store_true", help="only the voice's amplitude section")
    parser.add_argument(
        "--voices",
        nargs="+",
        default=[
            "audio/asterisk_allison_demo_instruct_73s.wav",
            "audio/jfk_inaugural_11s.flac",
            "video/latentsync_demo2.mp4",
        ],
    )
    parser.add_argument(
        "--pose2face-videos",
        nargs="+",
        default=["obama_clip2", "andrew_ng_clip1", "kristi_noem", "cnn_anchor_71s", "feifei_li_clip1", "obama_clip1"],
    )
    parser.add_argument(
        "--speed-videos", nargs="+", default=["obama_clip2", "andrew_ng_clip1", "kristi_noem", "cnn_anchor_71s"]
    )
    parser.add_argument("--speeds", nargs="+", default=["none", "0.9,1.1", "0.9,0.95,1.05,1.1"])
    parser.add_argument("--cross", nargs="*", default=["kristi_noem", "obama_clip1", "hdtf_katie_hill_8s"])
    parser.add_argument(
        "--blocks", nargs="+", default=["mel,embedding,vad,energy", "mel,vad,energy", "embedding,vad,energy"]
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    layout = Layout(ROOT)
    if args.pose2face_only:
        for clip in args.pose2face_videos:
            prepare(layout, clip)
        pose2face_section(layout, args.pose2face_videos)
        return
    if args.amplitude_only:
        for clip in args.speed_videos:
            prepare(layout, clip)
        amplitude_section(layout, args.speed_videos)
        return
    if args.voices_only:
        for clip in args.speed_videos:
            prepare(layout, clip)
        voices_section(layout, args.speed_videos, args.voices)
        return
    if args.speeds_only:
        for clip in args.speed_videos:
            prepare(layout, clip)
        speeds_section(layout, args.speed_videos, args.speeds)
        return
    for clip in [args.video, *args.cross, *args.eyes]:
        prepare(layout, clip)
    if args.eyes:
        eyes_section(layout, args.eyes)
    if args.eyes_only:
        return

    print(f"## Audio→Expression on {args.video} (held-out tail = last 15%)")
    cross_cols = " | ".join(f"x-speaker r {c}" for c in args.cross)
    print(f"| features | lips px | opening r | train s | {cross_cols} |")
    print(f"|---|---|---|---|{'---|' * len(args.cross)}")
    for blocks in args.blocks:
        # The lip-sync network alone: its features need not be the ones the head-motion model reads.
        features = AudioFeatureConfig(blocks=blocks)
        data = load_motion_data(layout, args.video, features, HOLDOUT)
        path = ROOT / f"a2e_{blocks.replace(',', '+')}.pt"
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        metrics = train_audio2expression(data, MotionConfig().expression, path, None)
        seconds = time.perf_counter() - start
        cross = [cross_speaker_corr(layout, args.video, path, other, features) for other in args.cross]
        cells = " | ".join(f"{c:.2f}" for c in cross)
        print(f"| {blocks} | {metrics['lips_px']:.2f} | {metrics['opening_corr']:.2f} | {seconds:.0f} | {cells} |")
    train, val = data.split
    for name, pred in baseline_predictions(data, train).items():
        m = evaluate_expressions(data, pred, val)
        print(
            f"| baseline: {name} ({blocks}) | {m['lips_px']:.2f} | {m['opening_corr']:.2f} | - |{' - |' * len(args.cross)}"
        )

    print(f"\n## Audio→Head motion on {args.video} (default features)")
    cfg = MotionConfig()
    data = load_motion_data(layout, args.video, cfg.features, HOLDOUT)
    pose_path = ROOT / "a2p.pt"
    pose_path.unlink(missing_ok=True)
    start = time.perf_counter()
    headpose.train_audio2pose(data, cfg.pose, pose_path, None)
    print(f"training: {time.perf_counter() - start:.0f} s for {cfg.pose.steps} steps")
    model = pose_model.Audio2PoseModel(pose_path)
    _, val = data.split
    val_features = features_for_video(layout, args.video, cfg.features, data.n_frames)
    tracked = pose_model.PoseSequence.from_tracks(data.tracks, val)
    generated = [model(val_features, seed=s).take(val) for s in range(5)]
    stats = headpose.evaluate_motion(generated, tracked, val_features.block("energy")[val, 0])
    for key in sorted(stats):
        print(f"| {key} | {stats[key]:.3f} |")
    long_audio = np.concatenate([load_audio(SHARED / "audio" / "musetalk_eng_60s.wav")] * 5)
    long_features = compute_features(long_audio, cfg.features)
    start = time.perf_counter()
    drift = headpose.evaluate_drift(model, long_features)
    pose_fps = len(long_features) / (time.perf_counter() - start)
    for key, value in drift.items():
        print(f"| drift (5 min): {key} | {value:.3f} |")

    print("\n## Inference speed (5-minute speech)")
    start = time.perf_counter()
    compute_features(long_audio, cfg.features)
    feature_fps = len(long_features) / (time.perf_counter() - start)
    a2e = Audio2ExpressionModel(ROOT / f"a2e_{'+'.join(cfg.features.blocks)}.pt")
    start = time.perf_counter()
    a2e(long_features)
    expression_fps = len(long_features) / (time.perf_counter() - start)
    print("| step | frames/s | x real time |\n|---|---|---|")
    for name, fps in (
        ("audio features", feature_fps),
        ("audio→expression", expression_fps),
        ("audio→head pose", pose_fps),
    ):
        print(f"| {name} | {fps:.0f} | {fps / 25:.0f} |")


if __name__ == "__main__":
    main()
