"""Typed stage configurations: defaults in code, overridable from YAML and the CLI, saved beside outputs."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, TypeVar

import yaml

from amg.errors import AmgError
from amg.fsutil import write_text

C = TypeVar("C")

# AMG's one frame rate: every video it writes, every per-frame array (tracks, audio features of 40 ms, motion).
FPS = 25


@dataclass
class PreprocessConfig:
    """Stage 1: avatar video → crop, tracks, matte, background plate."""

    fps: int = FPS  # the frame rate the avatar video is resampled to; AMG works at FPS only
    sample_rate: int = 16000
    # Side of the square crop the later stages work at (256 by default; 512 works too).
    size: int = 256
    # Face mesh runs on the crop resampled to this side (if the source has the pixels): more pixels on the face
    # than `size` gives sub-pixel landmarks at no extra model cost (the mesh model sees a fixed 192² face ROI).
    track_size: int = 512
    refine_landmarks: bool = True  # 478 points: refined lips and irises (lip-sync needs the lips most)
    # Half-body framing: the crop side and the face centre's height in it, in units of the face box height.
    crop_scale: float = 3.2
    crop_face_center_y: float = 0.38
    # Face detection runs on every k-th frame of the scan pass (faces move slowly; the mesh tracks per frame).
    scan_every: int = 5
    min_face_fraction: float = 0.5
    min_duration_s: float = 180.0  # shorter videos are accepted with a warning
    # MediaPipe pose costs ~50 ms per frame: run it on every k-th frame and interpolate (shoulders move slowly).
    pose_every: int = 10
    pose_size: int = 256
    # PCA expression basis.
    n_expression: int = 48
    # Temporal smoothing (see amg.tracking.smoothing): a Savitzky-Golay-style filter whose window stays short
    # on the mouth (5 frames: with polyorder 2 a 3-frame window would not smooth at all) so that fast lip
    # closures are not lagged or flattened.
    smooth_window: int = 7
    smooth_window_mouth: int = 5
    smooth_polyorder: int = 2
    # Background plate: temporal median over this many evenly spaced frames.
    background_samples: int = 120
    matte_threshold: float = 0.5
    # Body points that follow the torso's own pixels (amg.tracking.torso) instead of the pose model's alone.
    register_torso: bool = True
    preview: bool = True

    def __post_init__(self) -> None:
        if self.fps != FPS:  # the audio features (40 ms per frame) and every model assume it
            raise AmgError(f"Config fps: AMG works at {FPS} frames/s, got {self.fps}.")


@dataclass
class AudioFeatureConfig:
    """Speech → per-video-frame (25 fps) lip-sync features (amg.audio), alike for any voice and channel."""

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
        self.blocks = tuple(name.lower() for name in as_items(self.blocks))


@dataclass
class Audio2ExpressionConfig:
    """Lip-sync network (amg.motion.expression): a dilated temporal conv net, features → expression coefficients."""

    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr", "eval_every", "save_every")

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
    # default: it lowers the held-out lip error and raises the mouth-opening correlation on four clips, but the
    # mouth it predicts moves less (obama_clip2: opening spread 0.57x the real one's instead of 0.75x) and
    # `amg eval` came out mixed (README, "Stages 2-3"; `python benchmarks/motion.py --speeds-only`).
    speeds: tuple[float, ...] = ()
    holdout: float = 0.15  # the video's tail kept for validation
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        self.speeds = tuple(float(s) for s in as_items(self.speeds))
        if any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise AmgError(f"motion.expression.speeds must lie between 0.5 and 2, got {self.speeds}.")


@dataclass
class Audio2PoseConfig:
    """Head-motion network (amg.motion.headpose): autoregressive mixture density over head pose."""

    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr", "eval_every", "save_every")

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
    holdout: float = 0.15
    eval_every: int = 250
    save_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        # Canonical spelling, as for AudioFeatureConfig.blocks: the checkpoint's config must compare equal.
        self.audio_blocks = tuple(name.lower() for name in as_items(self.audio_blocks))


@dataclass
class Head2BodyConfig:
    """Shoulder/hip regressor from head pose (amg.motion.body): ridge regression, smoothed."""

    ridge: float = 1.0
    smooth_window: int = 15  # shoulders move slowly; the head's small jitter must not shake them
    holdout: float = 0.15


@dataclass
class Pose2FaceConfig:
    """What head pose does to the face away from the lips (amg.motion.pose2face): ridge regression, linear.

    Lets the jaw line, chin and cheeks follow the head as they do in the avatar's tracks, where (as the face
    oval is the tracker's outline of the face, and the rigid pose fit leaves some of the head's motion in the
    expression) they move with it: a linear map of head pose explains 28-63% of their variance in the
    training frames of six clips (18-39% on the held-out tails). Speech cannot predict that part; the head
    pose being rendered can (`python benchmarks/motion.py --pose2face-only`).
    """

    ridge: float = 0.1  # per training frame, on standardised pose features
    holdout: float = 0.15


@dataclass
class EyesConfig:
    """Eyes, brows and gaze (amg.motion.eyes): the stochastic model of what speech does not drive."""

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


@dataclass
class MotionConfig:
    """Stage 3 as a whole: the audio features it reads, its three networks and the eye model."""

    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    expression: Audio2ExpressionConfig = field(default_factory=Audio2ExpressionConfig)
    pose: Audio2PoseConfig = field(default_factory=Audio2PoseConfig)
    body: Head2BodyConfig = field(default_factory=Head2BodyConfig)
    pose2face: Pose2FaceConfig = field(default_factory=Pose2FaceConfig)
    eyes: EyesConfig = field(default_factory=EyesConfig)


@dataclass
class GanConfig:
    """Stage 5 (amg.gan): the avatar's own frames warped onto the target landmarks, blended and refined.

    The defaults are the `realtime` generator at 256 px: about 1.2 GFLOP per frame, so rendering keeps up with
    25 fps on 2 CPU cores. Presets (PRESETS below) change the size, width and schedule.
    """

    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr_g", "lr_d", "eval_every", "save_every", "eval_frames")

    size: int = 256  # generated crop side; the preprocessed crop is resized to it
    ngf: int = 16  # generator width at the first (half-resolution) level
    max_channels: int = 128
    n_levels: int = 6  # stride-2 levels of the U-Net: 256 → 4 px at the bottleneck
    context: int = 1  # conditioning of frames t-context .. t+context (temporal context, smooths motion)
    # Real training frames warped onto each generated frame's landmarks and blended (amg.gan.candidates):
    # 1 = nearest head pose, 2 = + nearest mouth shape (teeth), 3 = + nearest eye state (blinks), 4 = + a
    # second pose candidate from another moment (8 more input channels and one more warp per frame). Default
    # preset on obama_clip2, 4 candidates resampled bicubically against 3 bilinearly: held-out PSNR 27.65 dB
    # against 27.48, mouth sharpness 0.81x the real frames' against 0.70x (`amg eval`).
    n_candidates: int = 4
    # A candidate is kept while it costs (squared distance) at most (1 + this) times the best, so texture
    # switches rarely. On obama_clip2's held-out tail 1 switched the pose slot 13 times in 113 frames instead
    # of 41 (at 0) and cut its warp's face flicker from 4.77 to 4.21 (real 3.93), PSNR 26.05 dB against 25.93.
    candidate_hysteresis: float = 1.0
    # Training frames the candidates come from (all of them up to this many; beyond, spread + extremes).
    bank_size: int = 640
    # A training frame's candidates are never closer in time than this (else it copies the answer).
    reference_exclusion: int = 25
    ndf: int = 16  # discriminator width: at 32 the discriminators cost 3.5x the generator per step on CPU
    n_scales: int = 2  # multi-scale PatchGAN
    clip_frames: int = 3  # frames per clip seen by the temporal (3-D) discriminator
    # Starting from the warp, the default generator's held-out scores are flat after a few hundred steps
    # (obama_clip2: PSNR 26.05 dB at step 250, 26.02 at 500 and 750), so a CPU stops at 1000.
    steps: int = 1000
    batch_clips: int = 2  # clips per step (each clip_frames frames)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    weight_decay: float = 1e-4
    l1_weight: float = 10.0
    mouth_weight: float = 4.0  # extra L1 weight inside the mouth box (from the lip landmarks)
    alpha_weight: float = 1.0  # generated matte vs the tracked person matte
    gan_weight: float = 1.0
    feature_matching_weight: float = 5.0
    temporal_weight: float = 0.5
    # Shift-tolerant LPIPS (AlexNet, from the stlpips-pytorch wheel) on the mouth crop: what makes teeth and lip
    # edges crisp. It costs 1.9 GFLOP per 80² pair, so it is affordable on CPU; on the whole 256² frame
    # it costs 19.5 GFLOP per pair (13x the generator), so that term is for GPUs (the quality preset).
    # 0 turns a term off; both are skipped, with a warning, when the wheel is not installed.
    perceptual_weight: float = 1.0
    perceptual_full_weight: float = 0.0
    mouth_crop: int = 80  # side the mouth box (about 80 px at 256, 40 at 128) is resampled to for that loss
    ema_decay: float = 0.999
    holdout: float = 0.15  # the video's tail kept out of training for the held-out metrics
    eval_frames: int = 24
    eval_every: int = 250  # held-out metrics and a sample grid (conditioning | generated | real)
    save_every: int = 100
    seed: int = 0


@dataclass
class EnhanceConfig:
    """Stage 6, the face refiner (amg.enhance): the avatar's own face, learned at `scale` x the size it has in
    the generator's output, replacing GFPGAN (whose weights cannot be had offline and which drifts from the
    person's identity)."""

    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr_g", "lr_d", "eval_every", "save_every")

    scale: float = 2.0  # refined face crop side / its side in the generator's output
    margin: float = 0.12  # crop box around the face oval, per side, as a fraction of the face's extent
    smooth_window: int = 9  # frames the crop box centre is smoothed over (a steady box: no breathing, no shake)
    ngf: int = 16  # refiner width at full resolution (doubling at each of its 2 stride-2 levels)
    n_blocks: int = 2  # residual blocks at a quarter of the crop's resolution
    ndf: int = 16  # as the generator's discriminators: wider ones cost more than the refiner on CPU
    # At 256 px a face crop is about 370² at 2x: a step of 2 crops takes about 1.5 s on 2 CPU cores.
    steps: int = 1000
    batch_size: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    l1_weight: float = 10.0
    mouth_weight: float = 4.0  # extra L1 weight in the mouth box: teeth and lips are what the refiner is for
    gan_weight: float = 1.0
    feature_matching_weight: float = 5.0
    feather: float = 0.15  # blend ramp at the crop's border, as a fraction of its side
    max_frames: int = 1500  # training frames the pairs are made of (the generator runs once over them)
    reference_exclusion: int = 25  # as GanConfig's: the generator's pose reference is never the frame itself
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0


Engine = Literal["auto", "torch", "onnxruntime"]
ENGINES: tuple[str, ...] = typing.get_args(Engine)


@dataclass
class RenderConfig:
    """Inference (amg.pipeline): how the generated frames are made and written."""

    # Frames generated per batch: memory stays flat however long the audio. Larger batches are no faster
    # with ONNX Runtime, and each frame's inputs take 6 MB at 256 px.
    chunk: int = 16
    engine: Engine = "auto"  # generator runtime: auto (ONNX Runtime on CPU, PyTorch on GPU), torch, onnxruntime
    crf: int = 18
    full_frame: bool = False  # paste the crop back into the original frame size
    feather: float = 0.08  # width of the full-frame blend ramp, as a fraction of the crop side
    enhance: bool = False  # also write generated_superes.mp4 with the face refined (stage 6)
    upscale: int = 1  # generated_superes.mp4 at this multiple of the generator's size (face refined, rest resampled)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise AmgError(f"Config render.engine: use one of {', '.join(ENGINES)}, got {self.engine!r}.")
        if self.upscale not in (1, 2, 3, 4):
            raise AmgError(f"Config render.upscale: use 1, 2, 3 or 4, got {self.upscale!r}.")


@dataclass
class LiveConfig:
    """A live stream (amg.live): how far it looks ahead, and when it drops frames to keep up."""

    # Frames of speech the lip sync sees past the frame it draws (its network reaches 16; 8 keeps the latency
    # near half a second). Latency ≈ (lookahead + 1) frames + 72 ms of feature windows + the chunking + compute.
    lookahead: int = 8
    history: int = 48  # past frames each step recomputes the lip sync and smoothing over (its reach is 16 + 7)
    chunk: int = 4  # frames per generator call
    # A frame that would be shown later than this after its sound is not generated: the previous image stays
    # (counted as dropped), so a slow machine falls back to a lower frame rate, never out of sync.
    max_latency_s: float = 1.0
    engine: Engine = "auto"

    def __post_init__(self) -> None:
        if self.lookahead < 0 or self.history < 24 or self.chunk < 1 or self.max_latency_s <= 0:
            raise AmgError("Config live: lookahead >= 0, history >= 24, chunk >= 1 and max_latency_s > 0.")
        if self.engine not in ENGINES:
            raise AmgError(f"Config live.engine: use one of {', '.join(ENGINES)}, got {self.engine!r}.")


BlinkMode = Literal["natural", "off"]
BLINK_MODES: tuple[str, ...] = typing.get_args(BlinkMode)
MAX_BLINK_RATE = 5.0  # × the avatar's own rate: beyond it blinks run into each other


@dataclass
class MotionOptions:
    """How motion is made for a new speech, beyond what speech decides (the CLI's and the service's options)."""

    pose: Literal["generate", "static", "replay"] = "generate"
    seed: int = 0  # of the head motion and the blinks
    temperature: float = 1.0
    intensity: float = 1.0
    blinks: BlinkMode = "natural"
    blink_rate: float = 1.0  # multiplies the avatar's own blink rate

    def __post_init__(self) -> None:
        if self.blinks not in BLINK_MODES:
            raise AmgError(f"Unknown blink mode {self.blinks!r}: use one of {', '.join(BLINK_MODES)}.")
        if not 0 <= self.blink_rate <= MAX_BLINK_RATE:
            raise AmgError(
                f"The blink rate multiplier must be between 0 and {MAX_BLINK_RATE:g}, got {self.blink_rate:g}."
            )


@dataclass
class AvatarConfig:
    """What `--config` and `--set` reach after preprocessing: the trained stages (motion models, image GAN,
    face refiner) and how videos are rendered (`render.*`, not part of any checkpoint)."""

    motion: MotionConfig = field(default_factory=MotionConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


# Presets change only how much the avatar is trained (and how big it is), never what the stages do.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Tests and demos: minutes on 2 CPU cores for a 30-s clip.
    "fast": {
        "motion": {"expression.steps": 400, "pose.steps": 400},
        "gan": {
            "size": 128,
            "ngf": 16,
            "n_levels": 5,
            "steps": 300,
            "batch_clips": 2,
            "ndf": 16,
            "eval_every": 100,
            "perceptual_weight": 0.0,
        },
        "enhance": {"steps": 200, "eval_every": 100, "max_frames": 600},
    },
    # A usable avatar from a 3-minute video in under 2 hours on 2 CPU cores at 256 px.
    "default": {"motion": {}, "gan": {}, "enhance": {}},
    # A GPU overnight: a wider generator and many more steps.
    "quality": {
        "motion": {"expression.steps": 4000, "pose.steps": 3000},
        "gan": {
            "ngf": 48,
            "max_channels": 384,
            "steps": 100000,
            "batch_clips": 4,
            "ndf": 64,
            "perceptual_full_weight": 1.0,
            "eval_every": 1000,
            "save_every": 1000,
        },
        "enhance": {"ngf": 48, "n_blocks": 6, "ndf": 64, "steps": 20000, "batch_size": 8, "max_frames": 20000},
    },
}


def preset_overrides(preset: str) -> dict[str, Any]:
    """The dotted-key overrides (`gan.size`, `motion.expression.steps`, ...) preset `preset` makes to AvatarConfig."""
    if preset not in PRESETS:
        raise AmgError(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
    return {f"{stage}.{key}": value for stage, values in PRESETS[preset].items() for key, value in values.items()}


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise AmgError(f"Config {name}: expected a mapping of {tp.__name__} options, got {value!r}.")
        return config_from_dict(tp, value, prefix=f"{name}.")
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise AmgError(f"Config {name}: expected true/false, got {value!r}.")
        return bool(value)
    if origin is tuple:  # tuple[X, ...]: a YAML list, or "a, b" from --set
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(as_items(value)))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise AmgError(f"Config {name}: use one of {', '.join(map(str, allowed))}, got {value!r}.")
        return value
    if tp in (int, float, str):
        try:
            coerced = tp(value)
        except (TypeError, ValueError):
            raise AmgError(f"Config {name}: expected {tp.__name__}, got {value!r}.") from None
        return coerced if tp is str else _in_range(coerced, name)
    return value


def as_items(value: Any) -> tuple:
    """A list option's items: a sequence as it is, or a comma-separated string split and stripped."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


def _in_range(number: int | float, name: str) -> int | float:
    """The one range rule every numeric option follows: sizes, counts, steps, weights, rates and durations are
    finite and never negative, and periods (`*_every`: an action every N steps or frames) are at least 1."""
    low = 1 if name.rsplit(".", 1)[-1].endswith("_every") else 0
    if not math.isfinite(number) or number < low:
        raise AmgError(f"Config {name}: expected a finite number >= {low}, got {number!r}.")
    return number


def config_from_dict(cls: type[C], values: dict[str, Any] | None, prefix: str = "") -> C:
    """Build `cls` from defaults plus `values`; unknown keys are an error (typos must not pass silently).

    Nested configs take a mapping (`{"expression": {"steps": 500}}`, as in YAML) or dotted keys
    (`{"expression.steps": 500}`, as from `--set`).
    """
    values = _nest_dotted_keys(values or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AmgError(
            f"Unknown {cls.__name__} option(s): {', '.join(prefix + u for u in unknown)}. "
            f"Known: {', '.join(sorted(prefix + k for k in known))}."
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items() if v is not None}
    return cls(**kwargs)


def _nest_dotted_keys(values: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if not dot:
            nested[key] = value
            continue
        sub = nested.setdefault(head, {})
        if not isinstance(sub, dict):
            raise AmgError(f"Config {head}: cannot set {key!r} on the value {sub!r}.")
        sub[rest] = value
    return nested


def load_config(
    cls: type[C], yaml_path: str | os.PathLike | None = None, defaults: dict[str, Any] | None = None, **overrides: Any
) -> C:
    """The code's defaults, then `defaults` (a preset's), then the YAML file, then explicit overrides (None means
    'not given'). Each layer may use nested mappings or dotted keys; later layers win key by key."""
    layers = [defaults or {}, _read_yaml(yaml_path) if yaml_path is not None else {}]
    layers.append({k: v for k, v in overrides.items() if v is not None})
    values: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(values, _nest_dotted_keys(layer))
    return config_from_dict(cls, values)


def _read_yaml(yaml_path: str | os.PathLike) -> dict[str, Any]:
    path = Path(yaml_path)
    if not path.is_file():
        raise AmgError(f"Config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AmgError(f"Config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise AmgError(f"Config file {path} must hold a mapping of option: value.")
    return loaded


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], _nest_dotted_keys(value))
        else:
            base[key] = value


def model_fields(config: Any) -> dict[str, Any]:
    """`config` as a dict without its schedule fields (a class's SCHEDULE), nested configs alike: what the
    weights trained with it depend on. Two configs with equal model fields can continue each other's training."""
    schedule = getattr(config, "SCHEDULE", ())
    return {
        f.name: model_fields(value) if dataclasses.is_dataclass(value) else value
        for f in dataclasses.fields(config)
        if f.name not in schedule
        for value in [getattr(config, f.name)]
    }


def resolve_increments(overrides: dict[str, str], saved: Callable[[str], Any | None]) -> dict[str, str]:
    """Overrides with every `key=+N` made absolute: N more than the value the avatar was trained with, from
    `saved(section)`, its saved config of that section (`gan.steps=+500`: train 500 steps more)."""
    resolved = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith("+"):
            section, _, rest = key.partition(".")
            current = saved(section)
            if current is None:
                raise AmgError(f"--set {key}={value}: the avatar has no trained {section} to add to; give a number.")
            try:
                for part in rest.split("."):
                    current = getattr(current, part)
                increment = type(current)(value[1:])
            except (AttributeError, TypeError, ValueError):
                raise AmgError(f"--set {key}={value}: expected a number to add to a numeric option.") from None
            value = str(current + increment)
        resolved[key] = value
    return resolved


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Save a config as YAML beside the artifact it produced."""
    header = f"# {type(config).__name__} used to produce the files in this folder\n"
    write_text(path, header + yaml.safe_dump(_plain(config_to_dict(config)), sort_keys=False))


def _plain(value: Any) -> Any:
    """Tuples as lists, nested: YAML's safe dumper writes only plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_saved_config(cls: type[C], path: str | os.PathLike) -> C | None:
    """The config saved at `path`, or None if absent or no longer readable as `cls`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return config_from_dict(cls, yaml.safe_load(path.read_text()) or {})
    except (AmgError, yaml.YAMLError, TypeError):
        return None


__all__ = [
    "Audio2ExpressionConfig",
    "Audio2PoseConfig",
    "AudioFeatureConfig",
    "AvatarConfig",
    "GanConfig",
    "PRESETS",
    "RenderConfig",
    "Head2BodyConfig",
    "Pose2FaceConfig",
    "MotionConfig",
    "PreprocessConfig",
    "config_from_dict",
    "config_to_dict",
    "model_fields",
    "resolve_increments",
    "load_config",
    "preset_overrides",
    "read_saved_config",
    "save_config",
]
