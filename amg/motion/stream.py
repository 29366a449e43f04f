"""Stage 3 at inference, for a file and a live stream alike: audio features → the avatar's motion, frame by frame.

A file steps through its frames in windows (`recorded_motion`, for `predict_motion`); a live stream steps as
its features arrive (amg.live), `lookahead` frames behind the newest. Each step recomputes the deterministic
parts (lip sync, the silence gate, the pose smoothing and the body) over a window of the last `history` frames
and the look-ahead, with the same functions as the file, and advances the stochastic ones (blinks, gaze, head
motion) by exactly the new frames, so that one seed draws the same numbers either way. What differs in a stream
is only what it cannot have yet: the lip-sync network sees `lookahead` frames of the future (a file: up to ±16),
the head motion's audio context and the smoothing ends are cut there, the audio features near the newest
frame are provisional (amg.audio.stream), and the voice's amplitude (amg.motion.expression.inference.VoiceSpread)
is measured as the speech arrives instead of before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch

from amg.audio.features import AudioFeatures
from amg.config import MotionConfig, MotionOptions, read_saved_config
from amg.core.device import single_threaded
from amg.core.layout import Layout
from amg.motion.body import Head2Body
from amg.motion.expression.inference import Audio2ExpressionModel, VoiceSpread
from amg.motion.eyes import EyeAnimator, EyeModel, pause_frames, speech_energy, with_upper_face
from amg.motion.pose.inference import (
    Audio2PoseModel,
    PoseSampler,
    PoseSequence,
    audio_input,
    check_features,
    make_poses,
    smooth_poses,
)
from amg.motion.pose2face import Pose2Face
from amg.motion.tracks import MotionTracks
from amg.tracking import fitting
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """Audio features that can be read back by frame: a whole recording, or a live stream's recent past."""

    @property
    def available(self) -> int: ...

    @property
    def oldest(self) -> int: ...

    def window(self, start: int, stop: int) -> AudioFeatures: ...


class RecordedFeatures:
    """A whole recording's features as a FeatureSource; `available` may be lowered to step through it."""

    def __init__(self, features: AudioFeatures):
        self.features = features
        self.available = len(features)
        self.oldest = 0

    def window(self, start: int, stop: int) -> AudioFeatures:
        return self.features.take(slice(start, stop))


@dataclass
class MotionModels:
    """Everything an avatar's motion is made with, loaded once (a live stream keeps them)."""

    cfg: MotionConfig
    tracks: Tracks
    face_model: fitting.ExpressionModel
    expression: Audio2ExpressionModel
    eyes: EyeModel
    pose: Audio2PoseModel | None  # only for pose mode "generate"
    body: Head2Body
    pose2face: Pose2Face

    @classmethod
    def load(cls, layout: Layout, name: str, pose_mode: str) -> MotionModels:
        return cls(
            cfg=read_saved_config(MotionConfig, layout.motion_config(name)) or MotionConfig(),
            tracks=Tracks.load(layout.tracks(name)),
            face_model=fitting.ExpressionModel.load(layout.face_model(name)),
            expression=Audio2ExpressionModel(layout.audio2expression(name)),
            eyes=EyeModel.load(layout.eye_model(name)),
            pose=Audio2PoseModel(layout.audio2headpose(name)) if pose_mode == "generate" else None,
            body=Head2Body.load(layout.head2body(name)),
            pose2face=Pose2Face.load(layout.pose2face(name)),
        )


# A recording's motion is made RECORDING_STEP frames (20 s) at a time, so its memory does not grow with the
# speech's length. Each step's window reaches RECORDING_HISTORY frames back and RECORDING_LOOKAHEAD ahead: past
# every network's context and every smoothing (the lip sync's ±16 frames and silence gate, the head pose's audio
# context and smoothing, the body's), so the windows move as one step over the whole recording would, but for
# the lip-sync network's normalisation, which spans its input (the face differs by hundredths of a pixel).
RECORDING_STEP = 500
RECORDING_HISTORY = 48
RECORDING_LOOKAHEAD = 32


class _PoseStream:
    """Head poses for a stream of frames: sampled once per frame (as far as the features go), smoothed and
    turned into poses over a window."""

    def __init__(self, models: MotionModels, options: MotionOptions, history: int):
        self.models, self.options, self.history = models, options, history
        self.sampler = None
        if options.pose == "generate":
            pose = models.pose
            self.sampler = PoseSampler(
                pose.net, pose.stats, pose.cfg, [options.seed], pose.noise_scale, options.temperature
            )
        self.raw = np.zeros((0, 6), np.float32)  # standardised, unsmoothed poses of frames raw_start ...
        self.raw_start = 0

    def poses(self, window: AudioFeatures, start: int, stop: int) -> PoseSequence:
        """Poses of frames [start, stop), sampled as far as `stop` (`window` starts at frame `start`, reaches at
        least `stop`, and holds every frame sampled)."""
        if self.sampler is None:  # a fixed mode
            return make_poses(self.options.pose, self.models.tracks, stop - start, first=start)
        pose = self.models.pose
        sampled = self.raw_start + len(self.raw)
        if stop > sampled:
            check_features(pose, window)
            with torch.inference_mode():
                codes = pose.net.encode_audio(torch.from_numpy(audio_input(window, pose.cfg.audio_blocks))[None])[0]
            with single_threaded():  # the frame loop is latency-bound
                new = self.sampler.step(codes[sampled - start : stop - start])[:, 0]
            self.raw = np.concatenate([self.raw, new])
        z = smooth_poses(self.raw[start - self.raw_start : stop - self.raw_start], pose.cfg)
        # Zero in standardised units is the avatar's mean pose: scaling z scales the deviations from it.
        return pose.stats.poses(z * self.options.intensity)

    def forget_before(self, frame: int) -> None:
        """No window will start before `frame` again."""
        if frame - self.raw_start > 2 * self.history:
            self.raw = self.raw[frame - self.raw_start :]
            self.raw_start = frame


class MotionStream:
    """The avatar's motion for audio features that arrive over time; see the module docstring."""

    def __init__(
        self,
        models: MotionModels,
        options: MotionOptions,
        lookahead: int = 0,
        history: int = 10**9,
        voice: VoiceSpread | None = None,
    ):
        """`voice`: the speech's voice measured beforehand (a recording), else measured as it arrives."""
        self.models, self.options = models, options
        self.voice, self.measuring = voice or VoiceSpread(), voice is None
        self.lookahead, self.history = lookahead, history
        self.eyes = EyeAnimator(models.eyes, options.seed, options.blink_rate if options.blinks == "natural" else 0.0)
        self.poses = _PoseStream(models, options, history)
        self.pose_margin = self._pose_margin(models, lookahead)
        self.emitted = 0  # frames made so far

    @staticmethod
    def _pose_margin(models: MotionModels, lookahead: int) -> int:
        """Frames short of the newest that head poses are sampled up to. A pose is sampled once its audio context
        is complete when the look-ahead leaves room for that and for the smoothings after it (a recording stepped
        in windows then moves exactly as in one step); a live stream's short look-ahead samples up to the newest
        frame, its audio context cut there."""
        if models.pose is None:
            return 0
        context = models.pose.cfg.audio_context
        smoothing = models.pose.cfg.smooth_window // 2 + models.body.cfg.smooth_window // 2
        return context if lookahead >= context + smoothing else 0

    def advance(self, features: FeatureSource, final: bool = False) -> MotionTracks | None:
        """The motion of the frames that `features` now allows (all of them when `final`), or None."""
        available = features.available
        stop = available if final else available - self.lookahead
        if stop <= self.emitted:
            return None
        start, m = self.emitted, self.models
        first = max(features.oldest, start - self.history)
        window = features.window(first, available)
        rows = slice(start - first, stop - first)
        poses = self.poses.poses(window, first, available if final else available - self.pose_margin)
        body = m.body.predict(poses.rotation, poses.translation, poses.scale)[rows]
        poses = poses.take(rows)
        coeffs = m.expression.calibrated(window)
        if self.measuring:
            m.expression.measure(self.voice, coeffs[rows], window.vad[rows])
        coeffs = m.expression.finish(coeffs, window.vad, m.expression.voice_gain(self.voice))
        speech = fitting.decode(m.face_model, coeffs[rows]) + m.pose2face(poses)
        energy = speech_energy(window)
        upper = self.eyes.advance(pause_frames(window.vad)[rows], None if energy is None else energy[rows])
        shapes = with_upper_face(speech, upper.reshape(len(speech), -1, 3), m.eyes.points, m.eyes.weights)
        self.emitted = stop
        self.poses.forget_before(stop - self.history)
        return MotionTracks(
            # The coefficients closest to the shapes, for the record: the landmarks are the shapes themselves (the
            # eye model's upper face need not lie in the span of the face model's components).
            expression=fitting.encode(m.face_model, shapes - m.face_model.neutral).astype(np.float32),
            rotation=poses.rotation.astype(np.float32),
            translation=poses.translation.astype(np.float32),
            scale=poses.scale.astype(np.float32),
            body=body.astype(np.float32),
            landmarks=poses.head_pose().to_image(shapes).astype(np.float32),
            vad=window.vad[rows],
            size=m.tracks.size,
        )


def recorded_motion(models: MotionModels, options: MotionOptions, features: AudioFeatures) -> Iterator[MotionTracks]:
    """A whole recording's motion, RECORDING_STEP frames at a time (see there)."""
    voice = models.expression.voice_of(features)
    gain = models.expression.voice_gain(voice)
    if gain > 1.0:
        log.info("This voice moves the lip-sync's mouth less than the person's own speech: widened %.2fx.", gain)
    stream = MotionStream(models, options, RECORDING_LOOKAHEAD, RECORDING_HISTORY, voice)
    source = RecordedFeatures(features)
    for available in range(RECORDING_STEP, len(features) + RECORDING_STEP, RECORDING_STEP):
        source.available = min(available, len(features))
        motion = stream.advance(source, final=source.available == len(features))
        if motion is not None:
            yield motion
