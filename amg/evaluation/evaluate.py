"""`amg eval`: how good is an avatar, measured on footage it never saw, next to two no-learning baselines.

Self-driven: every model of the avatar is trained on the first (1 - holdout) of its video only, and the held-out
tail is rendered from its own speech. The mouth, jaw and cheeks come from the lip-sync network (the jaw line and
cheeks moved by the tail's head pose as in the training frames, amg.motion.pose2face); the eyes, brows
and gaze, the head pose and the body are the tail's real ones, because blinks and head motion are sampled
(stochastic) and a sampled blink or pose can never match the real frames pixel by pixel; so the generated eyes
are scored on following the driving eye opening. The head-motion network is judged on its own, by its motion statistics on the tail's
speech. Real, generated and baseline frames (the nearest training frame copied, and mesh-warped) are measured in
the same crop, by the same instruments.

Cross-driven (`--audio OTHER`): the avatar says other speech with generated head motion; there is no ground
truth, so only lip sync and mouth-opening statistics are reported, next to the real held-out frames' values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice, tee
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from amg.audio.features import (
    FRAME_HOP,
    AudioFeatures,
    features_for_audio,
    features_for_video,
)
from amg.conditioning import conditioning_to_rgb, render_conditioning
from amg.config import (
    FPS,
    EyesConfig,
    MotionConfig,
    MotionOptions,
    RenderConfig,
    read_saved_config,
)
from amg.core import images
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.evaluation import metrics
from amg.evaluation import mouth as mouth_metrics
from amg.evaluation.landmarks import LandmarkDetector
from amg.evaluation.native import native_scores
from amg.evaluation.records import EvalOptions, SequenceResult
from amg.evaluation.sync import (
    SyncModel,
    SyncResult,
    lagged_correlation,
    measure_sync,
    mouth_signals,
    sync_from_correlation,
)
from amg.gan.baselines import Baselines
from amg.media import VideoWriter, load_audio, pick_frames, resized_frames
from amg.motion.expression.inference import SILENCE_VAD
from amg.motion.eyes import blink_statistics, speech_with_upper_face
from amg.motion.inference import predict_motion
from amg.motion.pose.inference import Audio2PoseModel, PoseSequence
from amg.motion.pose.train import evaluate_motion
from amg.motion.pose2face import Pose2Face
from amg.motion.tracks import MotionTracks, tracked_motion
from amg.tracking import fitting, topology
from amg.tracking.boxes import face_boxes, mouth_boxes
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)

# Sync is searched over ±max_lag frames, so the held-out tail needs a few times that many frames to be measured.
MIN_HELD_OUT_FRAMES = 50
# With less training footage the sync measure's fit fails on real clips (benchmarks/sync_validation.py).
MIN_SYNC_FIT_FRAMES = 15 * FPS
METRIC_SIZE = 256  # landmark distances are reported in pixels of a 256 crop, whatever the generator's size


@dataclass
class Sequence:
    """One evaluated stretch of frames: how it is driven, and the speech that goes with it."""

    label: str  # "held_out" or the driving audio's name
    motion: MotionTracks
    features: AudioFeatures
    audio: np.ndarray  # 16 kHz mono, exactly the frames' length


# --- which frames are held out ---------------------------------------------------------------------------------
def held_out_start(n_frames: int, holdout: float) -> int:
    """First frame of the held-out tail (the same rounding as every training stage's split)."""
    if not 0 < holdout < 1:
        raise AmgError(f"--holdout must be a fraction between 0 and 1, got {holdout:g}.")
    _, tail = held_out_split(n_frames, holdout)
    n_val = tail.stop - tail.start
    if n_val < MIN_HELD_OUT_FRAMES:
        raise AmgError(
            f"A holdout of {holdout:g} leaves {n_val} frames of this {n_frames}-frame video for evaluation; "
            f"at least {MIN_HELD_OUT_FRAMES} (2 s) are needed: use a longer video or a larger --holdout."
        )
    return tail.start


def check_unseen(layout: Layout, name: str, n_frames: int, start: int, holdouts: dict[str, float]) -> None:
    """Refuse to evaluate on frames any of the avatar's models was (or is being) trained on, given each trained
    stage's holdout (amg.config.trained_holdouts): checked before training, so a finished or half-trained
    avatar with a smaller holdout is never trained further or used."""
    for stage, holdout in holdouts.items():
        stop = held_out_split(n_frames, holdout)[0].stop
        if stop > start:
            raise AmgError(
                f"The {stage} model of {name!r} was trained on frames up to {stop}, past the start of the "
                f"held-out tail ({start}): evaluate with --holdout {holdout:g} or less, or move "
                f"{layout.checkpoint_dir(name)} away so that `amg eval` trains the avatar on the shorter part."
            )


# --- how each sequence is driven -------------------------------------------------------------------------------
def self_driven(layout: Layout, name: str, tracks: Tracks, start: int, features: AudioFeatures) -> Sequence:
    """The held-out tail with its own speech: the predicted mouth (with the jaw line and cheeks the tail's head
    pose moves, amg.motion.pose2face) under the tail's real eyes, pose and body."""
    from amg.motion.expression.inference import Audio2ExpressionModel

    tail = slice(start, tracks.n_frames)
    # The network sees the whole video's speech so that its ±0.64 s of context at the tail's first frames is the
    # real audio, not padding; it never saw the tail's frames in training.
    # Its amplitude is matched to the tail's voice alone, as a render of that speech would be.
    model = Audio2ExpressionModel(layout.audio2expression(name))
    gain = model.voice_gain(model.voice_of(features.take(tail)))
    speech = model.finish(model.calibrated(features), features.vad, gain)[tail]
    poses = PoseSequence.from_tracks(tracks, tail)
    pose = poses.head_pose()
    face_model = fitting.ExpressionModel.load(layout.face_model(name))
    lower = fitting.decode(face_model, speech) + Pose2Face.load(layout.pose2face(name))(poses)
    shapes = speech_with_upper_face(face_model, lower, tracks.expression[tail])
    expression = fitting.encode(face_model, shapes - face_model.neutral)
    motion = tracked_motion(tracks, tail, pose.to_image(shapes), expression)
    audio = load_audio(layout.audio_wav(name))[start * FRAME_HOP : tracks.n_frames * FRAME_HOP]
    return Sequence("held_out", motion, features.take(tail), audio)


def cross_driven(layout: Layout, name: str, audio_name: str, motion_cfg: MotionConfig, seed: int) -> Sequence:
    """Other speech with generated head motion, as `amg run` renders it."""
    motion = predict_motion(layout, audio_name, name, MotionOptions(seed=seed))
    features = features_for_audio(layout, audio_name, motion_cfg.features)
    audio = load_audio(layout.audio_source(audio_name))[: motion.n_frames * FRAME_HOP]
    return Sequence(audio_name, motion, features, audio)


def eval_baselines(layout: Layout, name: str, tracks: Tracks, stop: int) -> Baselines:
    """The copy and warp baselines over the training frames (before `stop`), searched by landmarks reconstructed
    from tracked pose and expression: the face model the driving landmarks come from, so like meets like."""
    train = slice(0, stop)
    face_model = fitting.ExpressionModel.load(layout.face_model(name))
    pose = PoseSequence.from_tracks(tracks, train).head_pose()
    search = fitting.reconstruct_landmarks(face_model, pose, tracks.expression[train])
    return Baselines(search, tracks.landmarks, tracks.body, tracks.size, train)


# --- measuring -------------------------------------------------------------------------------------------------
def _labelled(frame: np.ndarray, text: str) -> np.ndarray:
    out = frame.copy()  # the frame itself stays as measured (the next frame's flicker compares with it)
    scale = out.shape[0] / 400
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
    return out


def measure_frames(
    sources: dict[str, Iterable[np.ndarray]],
    conditioning: Iterable[np.ndarray],
    mouth: np.ndarray,
    face: np.ndarray,
    audio: np.ndarray,
    video: Path,
    reference: str | None = None,
    desc: str = "Measuring",
) -> dict[str, dict[str, np.ndarray]]:
    """One pass over parallel frame streams: per source and frame, the re-detected landmarks, the mouth's
    sharpness, blur and share of teeth (amg.evaluation.mouth), the face box's change since the previous frame
    (texture flicker) and (against `reference`) PSNR/SSIM of the whole crop and the face box and the face box's
    LPIPS; meanwhile the side-by-side video (the sources, then the conditioning) is written with `audio`.
    Nothing is held but the measurements."""
    names = list(sources)
    detectors = {name: LandmarkDetector() for name in names}
    per: dict[str, dict[str, list]] = {
        name: {"landmarks": [], "mouth_sharpness": [], "mouth_blur": [], "teeth": [], "face_flicker": []}
        for name in names
    }
    lpips = metrics.FaceLPIPS.if_available() if reference is not None else None
    previous: dict[str, np.ndarray] = {}
    try:
        with VideoWriter(video, fps=FPS, audio=audio) as out:
            streams = zip(*sources.values(), conditioning)
            for i, (*frames, cond) in enumerate(tqdm(streams, total=len(mouth), desc=desc, unit="frame")):
                named = dict(zip(names, frames))
                for name, frame in named.items():
                    landmarks, mouth_box = detectors[name](frame), tuple(mouth[i])
                    per[name]["landmarks"].append(landmarks)
                    per[name]["mouth_sharpness"].append(images.sharpness(frame, mouth_box))
                    per[name]["mouth_blur"].append(mouth_metrics.mouth_blur(frame, mouth_box))
                    per[name]["teeth"].append(mouth_metrics.teeth_share(frame, landmarks, mouth_box))
                    if name in previous:
                        per[name]["face_flicker"].append(metrics.texture_flicker(previous[name], frame, tuple(face[i])))
                    previous[name] = frame
                    if reference is not None and name != reference:
                        scores = images.frame_scores(frame, named[reference], {"face": tuple(face[i])})
                        if lpips is not None:
                            scores["face_lpips"] = lpips(frame, named[reference], tuple(face[i]))
                        for key, value in scores.items():
                            per[name].setdefault(key, []).append(value)
                panels = [_labelled(f, n) for n, f in named.items()] + [
                    _labelled(conditioning_to_rgb(cond), "conditioning")
                ]
                out.write(np.concatenate(panels, axis=1))
    finally:
        for detector in detectors.values():
            detector.close()
    return {name: {k: np.asarray(v) for k, v in values.items()} for name, values in per.items()}


def eye_summary(landmarks: np.ndarray, driving: np.ndarray | None) -> dict[str, float]:
    """Blinks per minute of the eye opening of `landmarks` (dips under 0.6 × its own median, as the eye model
    counts them) and, given the `driving` landmarks, the correlation of the two eye openings."""
    opening = topology.eye_opening(landmarks)
    found = np.isfinite(opening)
    median = float(np.median(opening[found])) if found.any() else float("nan")
    summary = {"blinks_per_minute": blink_statistics(opening, median, EyesConfig())["blinks_per_minute"]}
    if driving is not None:
        wanted = topology.eye_opening(driving)
        both = found & np.isfinite(wanted)
        corr = np.corrcoef(opening[both], wanted[both])[0, 1] if both.sum() > 2 and opening[both].std() > 0 else np.nan
        summary["eye_corr_to_driving"] = float(corr)
    return summary


def speaking_frames(vad: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames,) bool: the frames whose speech probability says speech, as the lip-sync's silence gate reads
    it. The mouth's amplitude is compared over these (the issue asks for "the avatar's own speaking frames"): a
    voice with longer pauses shuts the mouth for longer (the gate), which widens the spread over all frames
    without any frame opening wider."""
    speaking = np.zeros(n_frames, bool)
    n = min(n_frames, len(vad))
    speaking[:n] = vad[:n] >= SILENCE_VAD
    return speaking


def opening_px(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Mouth opening per frame of landmarks detected on `size` frames, in pixels of a 256 crop."""
    return topology.mouth_opening(landmarks[..., :2]) * (METRIC_SIZE / size)


def own_speaking_opening(video: Path, size: int, vad: np.ndarray, n_frames: int) -> dict[str, float]:
    """The mouth opening's mean and spread over every speaking frame of the person's own video, by the same
    detector at the same size: what other speech's mouth is compared with (issue 30's "the avatar's own speaking
    frames"). The held-out tail alone holds 2-3 s of speech on a short clip, too little to measure a spread by."""
    detector = LandmarkDetector()
    try:
        frames = tqdm(resized_frames(video, size), total=n_frames, desc="Measuring the person's mouth", unit="frame")
        opening = np.array([opening_px(detector(frame)[None], size)[0] for frame in frames])
    finally:
        detector.close()
    spoken = opening[speaking_frames(vad, len(opening)) & np.isfinite(opening)]
    if not len(spoken):
        return {}
    return {
        "mouth_opening_mean_px": float(spoken.mean()),
        "mouth_opening_std_px": float(spoken.std()),
        "speaking_frames": len(spoken),
    }


def summarise(
    measured: dict[str, np.ndarray],
    size: int,
    sync: SyncResult | None,
    real_landmarks: np.ndarray | None = None,
    max_lag: int = 15,
    driving_landmarks: np.ndarray | None = None,
    speaking: np.ndarray | None = None,
) -> dict[str, float]:
    """Per-sequence numbers for the report (landmark distances in pixels of a 256 crop). The mouth opening's
    mean and spread are taken over the `speaking` frames where given (see speaking_frames)."""
    px = METRIC_SIZE / size
    landmarks = measured["landmarks"]
    opening = opening_px(landmarks, size)
    found = np.isfinite(landmarks).all(axis=(1, 2))
    spoken = opening[speaking] if speaking is not None and np.isfinite(opening[speaking]).any() else opening
    summary = {
        "face_found": float(found.mean()),
        "jitter_px": metrics.landmark_jitter(landmarks) * px,
        "mouth_opening_mean_px": float(np.nanmean(spoken)) if found.any() else float("nan"),
        "mouth_opening_std_px": float(np.nanstd(spoken)) if found.any() else float("nan"),
    } | eye_summary(landmarks, driving_landmarks)
    if sync is not None:
        summary |= {"sync_offset": defined_offset(sync), "sync_confidence": sync.confidence, "sync_peak": sync.peak}
    for key in (
        "psnr",
        "ssim",
        "face_psnr",
        "face_ssim",
        "face_lpips",
        "mouth_sharpness",
        "mouth_blur",
        "face_flicker",
    ):
        if key in measured and len(measured[key]):
            summary[key] = float(np.nanmean(measured[key]))
    if "teeth" in measured:
        summary["teeth_frames"] = mouth_metrics.teeth_frames(measured["teeth"])
    if real_landmarks is not None:
        distance = metrics.lip_distance(landmarks, real_landmarks) * px
        summary["mouth_lmd_px"] = float(np.nanmean(distance)) if np.isfinite(distance).any() else float("nan")
        # Timing against the real mouth itself (no speech model involved): checks the audio-based offset.
        timing = mouth_timing(mouth_signals(real_landmarks), mouth_signals(landmarks), max_lag)
        summary["mouth_lag_to_real"] = defined_offset(timing)
        summary["mouth_corr_to_real"] = timing.peak
    return summary


def defined_offset(result: SyncResult) -> float:
    """The offset, or NaN when the curve is flat (no face found, a frozen mouth): then every lag is as good and
    reading one out would report a made-up offset."""
    return float(result.offset) if np.ptp(result.correlation) > 0 else float("nan")


def mouth_timing(real: np.ndarray, other: np.ndarray, max_lag: int) -> SyncResult:
    """How many frames `other`'s mouth signals (T, 3) trail the real ones, from their frame-to-frame changes."""
    return sync_from_correlation(*lagged_correlation(np.diff(real, axis=0), np.diff(other, axis=0), int(max_lag)))


class Evaluator:
    """The trained avatar's generator, baselines and sync measure, shared by every evaluated sequence."""

    def __init__(self, layout: Layout, name: str, tracks: Tracks, start: int, options: EvalOptions):
        from amg.gan.inference import AvatarGenerator

        self.layout, self.name, self.options = layout, name, options
        self.generator = AvatarGenerator(layout, name, engine=options.engine, precision=options.precision)
        self.size = self.generator.size
        self.source_size = tracks.size
        self.baselines = eval_baselines(layout, name, tracks, start)
        self.video = layout.frames_video(name)
        self.enhancer = None
        if options.enhance:
            from amg.enhance.inference import FaceEnhancer

            self.enhancer = FaceEnhancer(layout, name, engine=options.engine, precision=options.precision)
        self.sync_model: SyncModel | None = None

    def fit_sync(self, features: AudioFeatures, tracks: Tracks, start: int) -> None:
        """The sync measure learns how this person's mouth follows speech from the training frames only."""
        if start < MIN_SYNC_FIT_FRAMES:
            log.warning(
                "Only %.1f s of training footage: the sync measure was validated with 15 s or more "
                "(benchmarks/sync_validation.py); treat its offsets and confidences with caution.",
                start / FPS,
            )
        train = slice(0, start)
        signals = mouth_signals(tracks.landmarks_raw[train])
        self.sync_model = SyncModel.fit(features.take(train), signals, tracks.tracked[train])

    def _pick(self, index: np.ndarray) -> dict[int, np.ndarray]:
        """The avatar's frames at `index`, at the generator's size, in one pass over the video."""
        return pick_frames(resized_frames(self.video, self.size), index)

    def evaluate(self, sequence: Sequence, real: Iterable[np.ndarray] | None = None) -> SequenceResult:
        motion = sequence.motion
        sources: dict[str, Iterable[np.ndarray]] = {} if real is None else {"real": real}
        generated = self.generator.frames(motion, self.options.chunk)
        if self.enhancer is None:
            sources["generated"] = generated
        else:
            sources["generated"], to_enhance = tee(generated)
            sources["enhanced"] = self.enhancer.frames(to_enhance, motion.landmarks, motion.size)
        sources |= self.baselines.render(self._pick, motion.landmarks, motion.body)
        conditioning = (
            render_conditioning(lm, body, self.size, self.source_size)
            for lm, body in zip(motion.landmarks, motion.body)
        )
        mouth = mouth_boxes(motion.landmarks, self.source_size, self.size)
        face = face_boxes(motion.landmarks, self.source_size, self.size)
        path = self.layout.eval_video(self.name, sequence.label if real is not None else f"cross_{sequence.label}")
        measured = measure_frames(
            sources,
            conditioning,
            mouth,
            face,
            sequence.audio,
            path,
            reference="real" if real is not None else None,
            desc=f"Evaluating {sequence.label}",
        )
        # The lip-sync network's own output, before any image is made: tells a motion fault from an image fault.
        measured["driving"] = {"landmarks": motion.landmarks * np.float32(self.size / self.source_size)}
        real_landmarks = measured["real"]["landmarks"] if real is not None else None
        summaries, openings, eyes, syncs = {}, {}, {}, {}
        driving = measured["driving"]["landmarks"]
        speaking = speaking_frames(sequence.features.vad, len(driving))
        max_lag = self.options.max_lag
        for source, values in measured.items():
            # The driving landmarks and the sync measure are both functions of the same speech: their "sync"
            # would be high by construction and say nothing, so it is left out.
            if source != "driving":
                signals = mouth_signals(values["landmarks"])
                syncs[source] = measure_sync(self.sync_model, sequence.features, signals, max_lag)
            compare_to = real_landmarks if source != "real" else None
            follows = driving if source not in ("driving", "real") else None
            summaries[source] = summarise(values, self.size, syncs.get(source), compare_to, max_lag, follows, speaking)
            openings[source] = opening_px(values["landmarks"], self.size)
            eyes[source] = topology.eye_opening(values["landmarks"])
        return SequenceResult(sequence.label, summaries, openings, eyes, syncs)

    def native(self, sequence: Sequence, tracks: Tracks, start: int) -> dict | None:
        """The held-out tail scored in the source's frame and pixels (amg.evaluation.native), as `amg run`
        delivers it; None for a source the crop covers whole."""

        def pairs():  # made only if there is a frame around the crop to score (the detail's bank takes seconds)
            """Each frame as rendered, and without the detail at the source's resolution (the baseline over a still
            frame: the crop as it was enlarged); one generator pass where the render adds no detail."""
            detail = self.generator.native_detail(self.layout, self.name) if self.options.native_detail else None
            rendered = self.generator.frames(sequence.motion, self.options.chunk, detail=detail)
            if detail is None:
                yield from ((frame, frame) for frame in rendered)
            else:
                yield from zip(rendered, self.generator.frames(sequence.motion, self.options.chunk))

        nearest = self.baselines.nearest(sequence.motion.landmarks)
        feather = RenderConfig().feather
        return native_scores(self.layout, self.name, tracks, start, self.options.holdout, feather, pairs(), nearest)


def pose_statistics(
    layout: Layout, name: str, tracks: Tracks, sequence: Sequence, seed: int
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Head motion sampled from the held-out speech against the real head motion of the tail: statistics and
    both yaw/pitch/roll tracks (degrees) for the plot."""
    model = Audio2PoseModel(layout.audio2headpose(name))
    generated = model(sequence.features, seed)
    real = PoseSequence(sequence.motion.rotation, sequence.motion.translation, sequence.motion.scale)
    energy = sequence.features.block("energy")[:, 0] if "energy" in sequence.features.blocks else None
    stats = evaluate_motion(generated, real, energy)
    euler = [p.head_pose().euler_degrees() for p in (real, generated)]
    return stats, euler[0], euler[1]


# --- the whole evaluation --------------------------------------------------------------------------------------
def evaluate_trained_avatar(layout: Layout, name: str, options: EvalOptions) -> dict:
    """Evaluate avatar `name`, trained on the first 1 - holdout of its video only (`amg.pipeline.evaluate_avatar`
    trains what it lacks first), and write the report."""
    from amg.evaluation.report import write_report

    tracks = Tracks.load(layout.tracks(name))
    start = held_out_start(tracks.n_frames, options.holdout)
    motion_cfg = read_saved_config(MotionConfig, layout.motion_config(name)) or MotionConfig()
    features = features_for_video(layout, name, motion_cfg.features, tracks.n_frames)

    evaluator = Evaluator(layout, name, tracks, start, options)
    evaluator.fit_sync(features, tracks, start)
    held_out = self_driven(layout, name, tracks, start, features)
    real = islice(resized_frames(layout.frames_video(name), evaluator.size), start, tracks.n_frames)
    results = [evaluator.evaluate(held_out, real)]
    native = evaluator.native(held_out, tracks, start)
    pose = pose_statistics(layout, name, tracks, held_out, options.seed)
    for audio_name in options.audios:
        results.append(evaluator.evaluate(cross_driven(layout, name, audio_name, motion_cfg, options.seed)))
    own = None
    if options.audios:  # other speech is compared with the person's whole video
        own = own_speaking_opening(layout.frames_video(name), evaluator.size, features.vad, tracks.n_frames)
    return write_report(layout, name, options, tracks.n_frames, start, evaluator.size, results, pose, native, own)
