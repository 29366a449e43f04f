"""Stages 2-3's options: the speech features and the motion models (lip sync, head motion, body, the face's
response to head pose, eyes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from amg.config.limits import DROPOUT, FRACTION, LOSS_WEIGHT, NOISE, RATE
from amg.core.constants import SAMPLE_RATE
from amg.core.dataclass_io import MAX_FLOAT, as_items
from amg.core.errors import AmgError

# The speech feature blocks (amg.audio.features), in their column order.
FEATURE_BLOCKS: tuple[str, ...] = ("mel", "embedding", "vad", "energy")
# The smallest ridge penalty that keeps the regressions' normal equations solvable.
MIN_RIDGE = 1e-6


def feature_blocks(option: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` in one canonical spelling (lower case), or AmgError unless each is a feature block, listed once."""
    names = tuple(name.lower() for name in as_items(names))
    if not names or not set(names) <= set(FEATURE_BLOCKS) or len(set(names)) != len(names):
        raise AmgError(
            f"Config {option}: list each of {', '.join(FEATURE_BLOCKS)} at most once, got {','.join(names)!r}."
        )
    return names


@dataclass
class AudioFeatureConfig:
    """Speech → per-video-frame (25 fps) lip-sync features (amg.audio), alike for any voice and channel."""

    # Bounds narrower than the one range rule (amg.core.dataclass_io).
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_mels": (1, 128),
        "fmin": (0.0, SAMPLE_RATE / 2),
        "fmax": (0.0, SAMPLE_RATE / 2),
        "floor_db": (1.0, 200.0),
        "vad_threshold": FRACTION,
    }

    # Feature blocks, in this column order (a list, or "mel, vad" from --set): mel, embedding, vad, energy.
    blocks: tuple[str, ...] = ("mel", "embedding", "vad", "energy")
    # Log-mel block: 25 ms windows every 10 ms (4 per video frame, stacked). The band stops at 4 kHz, the band
    # 8 kHz phone audio has too, so phone and wideband speech look alike. 24 bands (about critical bands) are
    # as informative as 40 or 64 here and more robust: finer bands resolve the voice's pitch harmonics, which
    # differ between speakers (benchmarks/audio_features.py).
    n_mels: int = 24
    fmin: float = 60.0
    fmax: float = 4000.0
    # Range kept below the utterance's speech level: anything quieter (room noise, digital silence) reads as
    # this floor, so silence looks the same in every recording.
    floor_db: float = 60.0
    # Standardise each speech-embedding dimension with the utterance's own speech statistics (else, and when it
    # has too little speech, with fixed statistics of several speakers).
    embedding_normalize: bool = True
    # Frames whose speech probability reaches this count as speech for the normalisation statistics.
    vad_threshold: float = 0.5

    def __post_init__(self) -> None:
        # One canonical spelling, so that ("mel", "vad") in code and "Mel, vad" from YAML compare equal.
        self.blocks = feature_blocks("motion.features.blocks", self.blocks)
        if self.fmin >= self.fmax:
            raise AmgError(f"Config motion.features: fmin ({self.fmin:g} Hz) must be below fmax ({self.fmax:g} Hz).")


@dataclass
class Audio2ExpressionConfig:
    """Lip-sync network (amg.motion.expression.train): a dilated temporal conv net, features → expression coefficients."""

    # Read from older saved configs and checkpoints, and ignored: the holdout is AvatarConfig.holdout now.
    RETIRED: ClassVar[tuple[str, ...]] = ("holdout",)
    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr", "eval_every", "save_every")
    # Bounds narrower than the one range rule (amg.core.dataclass_io): what the network works with.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "hidden": (1, 1024),
        "dilations": (1, 64),
        "dropout": DROPOUT,
        "batch_size": (1, 4096),
        "window": (1, 10_000),
        "lr": RATE,
        "weight_decay": RATE,
        "mouth_weight": LOSS_WEIGHT,
        "velocity_weight": LOSS_WEIGHT,
        "feature_noise": NOISE,
        "speeds": (0.5, 2.0),
    }

    hidden: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1)  # kernel-3 blocks: ±16 frames (±0.64 s) of audio context
    dropout: float = 0.1
    steps: int = 1500
    batch_size: int = 16
    window: int = 64  # frames per training window
    lr: float = 1e-3
    weight_decay: float = 1e-4
    mouth_weight: float = 1.0
    velocity_weight: float = 0.5
    feature_noise: float = 0.1
    # Speed perturbation: the training speech is also learned from played at these speeds (e.g. 0.9, 0.95, 1.05,
    # 1.1: resampled, so tempo and pitch change together), with the tracked expressions re-timed to it. Off by
    # default: the mouth it predicts moves less (docs/decisions.md, "Speed perturbation").
    speeds: tuple[float, ...] = ()
    # Widen the predicted mouth motion by the gain a second network, trained without the last fifth of the
    # training part, needs there to move as the person's mouth does (amg.motion.expression.train.amplitude_gain;
    # doubles this network's training time).
    calibrate_amplitude: bool = True
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        self.speeds = tuple(float(s) for s in as_items(self.speeds))
        if not self.dilations:
            raise AmgError("Config motion.expression.dilations: the lip-sync network needs at least one block.")


@dataclass
class Audio2PoseConfig:
    """Head-motion network (amg.motion.pose.train): autoregressive mixture density over head pose."""

    # Read from older saved configs and checkpoints, and ignored: the holdout is AvatarConfig.holdout now.
    RETIRED: ClassVar[tuple[str, ...]] = ("holdout",)
    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr", "eval_every", "save_every")
    # Bounds narrower than the one range rule (amg.core.dataclass_io): what the network works with.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "hidden": (1, 1024),
        "history": (1, 250),
        "audio_context": (0, 250),
        "n_mixtures": (1, 64),
        "dropout": DROPOUT,
        "batch_size": (1, 100_000),
        "lr": RATE,
        "weight_decay": RATE,
        "history_noise": NOISE,
        "feature_noise": NOISE,
        "clamp_margin": (0.0, 10.0),  # of the training range, each side
    }

    # Small on purpose: one avatar video gives a few thousand strongly correlated frames, and wider nets learn
    # them by heart (on a 30-s video hidden 64 already fits the held-out tail worse than 32).
    hidden: int = 32
    history: int = 8  # past frames of pose the next one is conditioned on
    audio_context: int = 12  # ± frames of audio features around the predicted frame (±0.5 s)
    # Feature blocks the pose sees: the prosody (energy, speech probability). The speech embedding (add
    # "embedding") and the log-mel block say what is spoken, which the head hardly follows, and let a net
    # memorise its training frames.
    audio_blocks: tuple[str, ...] = ("vad", "energy")
    n_mixtures: int = 4
    dropout: float = 0.3
    steps: int = 1500
    batch_size: int = 128  # frames per step
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # Noise on the conditioning history (exposure bias: at inference the history is the model's own samples).
    history_noise: float = 0.05
    feature_noise: float = 0.5  # blurs the exact energy contour, which would identify each training frame
    # Sampled poses are soft-clamped to the training range, widened by this fraction of it on each side.
    clamp_margin: float = 0.25
    smooth_window: int = 9  # Savitzky-Golay window (order 2) over the sampled trajectory: keeps motion < ~3 Hz
    eval_every: int = 250
    save_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        # Canonical spelling, as for AudioFeatureConfig.blocks: the checkpoint's config must compare equal.
        self.audio_blocks = feature_blocks("motion.pose.audio_blocks", self.audio_blocks)


@dataclass
class Head2BodyConfig:
    """Shoulder/hip regressor from head pose (amg.motion.body): ridge regression, smoothed."""

    # Read from older saved configs and checkpoints, and ignored: the holdout is AvatarConfig.holdout now.
    RETIRED: ClassVar[tuple[str, ...]] = ("holdout",)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"ridge": (MIN_RIDGE, MAX_FLOAT)}

    ridge: float = 1.0
    smooth_window: int = 15  # shoulders move slowly; the head's small jitter must not shake them


@dataclass
class Pose2FaceConfig:
    """What head pose does to the face away from the lips (amg.motion.pose2face): ridge regression, linear.

    Lets the jaw line, chin and cheeks follow the head as they do in the avatar's tracks, where (as the face
    oval is the tracker's outline of the face, and the rigid pose fit leaves some of the head's motion in the
    expression) they move with it: a linear map of head pose explains 28-63% of their variance in the
    training frames of six clips (18-39% on the held-out tails). Speech cannot predict that part; the head
    pose being rendered can (`python benchmarks/motion.py --pose2face-only`).
    """

    # Read from older saved configs and checkpoints, and ignored: the holdout is AvatarConfig.holdout now.
    RETIRED: ClassVar[tuple[str, ...]] = ("holdout",)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"ridge": (MIN_RIDGE, MAX_FLOAT)}

    ridge: float = 0.1  # per training frame, on standardised pose features


@dataclass
class EyesConfig:
    """Eyes, brows and gaze (amg.motion.eyes): the stochastic model of what speech does not drive."""

    # Bounds narrower than the one range rule (amg.core.dataclass_io).
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "blink_ratio": (0.05, 1.0),
        "max_blink_frames": (1, 250),
        "blink_pad": (0, 25),
        "blink_depth": FRACTION,
        "min_interval_shape": (0.1, 100.0),
        "max_interval_shape": (0.1, 100.0),
        "max_pause_gain": (1.0, 100.0),
        "drift_components": (0, 64),
        "max_rho": (0.0, 0.9999),  # 1 would be a random walk: the drift would wander off
        "min_energy_corr": FRACTION,
    }

    # A blink: the mean eye opening (lid gap over eye width) under this fraction of the video's median, for at
    # most max_blink_frames (longer is looking down). Each blink's shape keeps blink_pad frames either side.
    blink_ratio: float = 0.6
    max_blink_frames: int = 25
    blink_pad: int = 3
    blink_depth: float = 0.45  # every blink closes the eyes to at most this fraction of the median opening
    # Gamma shape of the intervals between blinks is estimated from the video, within these bounds (people
    # blink more regularly than a Poisson process, shape 1; a 20-s clip has too few intervals to say more).
    min_interval_shape: float = 1.5
    max_interval_shape: float = 6.0
    max_pause_gain: float = 4.0  # at most this much likelier to blink in a pause than in speech
    drift_components: int = 4  # principal components of the upper face that drift between blinks
    max_rho: float = 0.995  # frame-to-frame correlation bound of the drift (keeps it stationary)
    min_energy_corr: float = 0.2  # a drift component follows speech energy only when the video shows this link

    def __post_init__(self) -> None:
        if self.min_interval_shape > self.max_interval_shape:
            raise AmgError(
                f"Config motion.eyes: min_interval_shape ({self.min_interval_shape:g}) is above max_interval_shape "
                f"({self.max_interval_shape:g})."
            )


@dataclass
class MotionConfig:
    """Stage 3 as a whole: the audio features it reads, its three networks and the eye model."""

    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    expression: Audio2ExpressionConfig = field(default_factory=Audio2ExpressionConfig)
    pose: Audio2PoseConfig = field(default_factory=Audio2PoseConfig)
    body: Head2BodyConfig = field(default_factory=Head2BodyConfig)
    pose2face: Pose2FaceConfig = field(default_factory=Pose2FaceConfig)
    eyes: EyesConfig = field(default_factory=EyesConfig)

    def __post_init__(self) -> None:
        missing = set(self.pose.audio_blocks) - set(self.features.blocks)
        if missing:
            raise AmgError(
                f"Config motion.pose.audio_blocks: the head-motion model reads {', '.join(sorted(missing))}, which "
                f"motion.features.blocks does not compute."
            )
