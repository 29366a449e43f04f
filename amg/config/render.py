"""How videos are made from a trained avatar: files (stage 7), live streams, and the motion options of a new
speech (head pose mode, seed, blinks)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from amg.core.dataclass_io import MAX_INT
from amg.core.errors import AmgError
from amg.core.precision import Precision

# The original system's label, drawn on every generated frame by default (amg.media.marks).
LABEL = "This video has been manipulated."
MAX_LABEL_CHARS = 120  # a corner band, not a subtitle: longer text would wrap over the picture

Engine = Literal["auto", "torch", "onnxruntime", "int8"]
ENGINES: tuple[str, ...] = typing.get_args(Engine)


Framing = Literal["source", "crop"]
FRAMINGS: tuple[str, ...] = typing.get_args(Framing)


@dataclass
class RenderConfig:
    """Inference (amg.pipeline): how the generated frames are made and written."""

    # Read from older saved configs, and ignored: `framing` replaced it (its "true" is the default now).
    RETIRED: ClassVar[tuple[str, ...]] = ("full_frame",)
    # Bounds narrower than the one range rule (amg.core.dataclass_io).
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "chunk": (1, 1024),
        "crf": (0, 51),  # H.264's quality scale
        "feather": (0.0, 0.5),  # of the crop's side, from each edge
    }

    # Frames generated per batch: memory stays flat however long the audio. Larger batches are no faster
    # with ONNX Runtime, and each frame's inputs take 6 MB at 256 px.
    chunk: int = 16
    # Generator runtime: auto (PyTorch where the precision is reduced, else ONNX Runtime on a CPU), torch,
    # onnxruntime (fp32), int8 (ONNX Runtime, the generator quantized: amg.core.onnx_runtime).
    engine: Engine = "auto"
    precision: Precision = "auto"  # the number format it computes in (amg.core.precision)
    crf: int = 18
    # source: the avatar video's own frame size, the generated crop pasted over real frames of the video that
    # follow the generated body (amg.media.output.Backdrops); crop: the generator's square crop alone.
    framing: Framing = "source"
    feather: float = 0.08  # width of the blend ramp around the pasted crop, as a fraction of the crop side
    # With the source's framing, where the crop window holds more pixels than the crop (a 1080p video's window
    # generated at 512): the face box at the source's resolution, its finest detail from the candidates' own
    # frames (amg.gan.native).
    native_detail: bool = True
    enhance: bool = False  # also write generated_superes.mp4 with the face refined (stage 6)
    upscale: int = 1  # generated_superes.mp4 at this multiple of the generator's size (face refined, rest resampled)
    # The visible label in a corner of every frame ("": none). Every output also carries an invisible watermark,
    # AMG's metadata tags and a signed C2PA manifest, whatever this says (amg.media.marks, amg.media.provenance).
    label: str = LABEL

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise AmgError(f"Config render.engine: use one of {', '.join(ENGINES)}, got {self.engine!r}.")
        check_framing("render.framing", self.framing)
        if self.upscale not in (1, 2, 3, 4):
            raise AmgError(f"Config render.upscale: use 1, 2, 3 or 4, got {self.upscale!r}.")
        check_label("render.label", self.label)


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
    precision: Precision = "auto"
    framing: Framing = "source"  # as render.framing: the avatar video's own frame, or the generator's crop
    # As render.native_detail, but off by default: at 1080p its warps and compose take about 40 ms a frame on
    # 2 CPU cores, which a live frame cannot spare (it drops frames instead).
    native_detail: bool = False
    label: str = LABEL  # the visible label on every frame ("": none); frames are watermarked whatever it says

    def __post_init__(self) -> None:
        if self.lookahead < 0 or self.history < 24 or self.chunk < 1 or self.max_latency_s <= 0:
            raise AmgError("Config live: lookahead >= 0, history >= 24, chunk >= 1 and max_latency_s > 0.")
        if self.engine not in ENGINES:
            raise AmgError(f"Config live.engine: use one of {', '.join(ENGINES)}, got {self.engine!r}.")
        check_framing("live.framing", self.framing)
        check_label("live.label", self.label)


def check_framing(option: str, framing: str) -> None:
    if framing not in FRAMINGS:
        raise AmgError(f"Config {option}: use one of {', '.join(FRAMINGS)}, got {framing!r}.")


def check_label(option: str, label: str) -> None:
    """AmgError unless `label` is a visible label a frame can show: printable, one line, at most MAX_LABEL_CHARS."""
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise AmgError(f"Config {option}: printable text on one line, at most {MAX_LABEL_CHARS} characters.")


BlinkMode = Literal["natural", "off"]
BLINK_MODES: tuple[str, ...] = typing.get_args(BlinkMode)
MAX_BLINK_RATE = 5  # × the avatar's own rate: beyond it blinks run into each other
# Head-motion temperature and intensity: beyond it the sampled motion is past anything the avatar's video shows
# (the poses are soft-clamped to its range widened by a quarter, and intensity scales them after that).
MAX_POSE_SCALE = 5
PoseMode = Literal["generate", "static", "replay"]
POSE_MODES: tuple[str, ...] = typing.get_args(PoseMode)


@dataclass
class MotionOptions:
    """How motion is made for a new speech, beyond what speech decides (the CLI's and the service's options)."""

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "seed": (0, MAX_INT),
        "temperature": (0, MAX_POSE_SCALE),
        "intensity": (0, MAX_POSE_SCALE),
        "blink_rate": (0, MAX_BLINK_RATE),
    }

    pose: PoseMode = "generate"
    seed: int = 0  # of the head motion and the blinks
    temperature: float = 1.0
    intensity: float = 1.0
    blinks: BlinkMode = "natural"
    blink_rate: float = 1.0  # multiplies the avatar's own blink rate

    def __post_init__(self) -> None:
        # Checked here, not only by the config loader: the CLI, a batch manifest and the service build these.
        if self.pose not in POSE_MODES:
            raise AmgError(f"Unknown pose mode {self.pose!r}: use one of {', '.join(POSE_MODES)}.")
        if self.blinks not in BLINK_MODES:
            raise AmgError(f"Unknown blink mode {self.blinks!r}: use one of {', '.join(BLINK_MODES)}.")
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise AmgError(f"The motion option {name} must be from {low} to {high}, got {value!r}.")
