"""`amg run`: the whole product in order. Each stage caches its outputs, so only what is missing runs.

    1. preprocess the avatar video           amg.tracking.preprocess   (cached in input_data/video/NAME/processed)
    2. audio features of the driving speech  amg.audio.features        (cached beside the audio)
    3. audio → expression, head motion, body amg.motion                (trained once per avatar)
    4. conditioning images                   amg.render
    5. image GAN                             amg.gan                    (trained once per avatar)
    7. the mp4 with the speech muxed in      amg.output
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from amg.config import AvatarConfig, PreprocessConfig, RenderConfig, read_saved_config
from amg.layout import Layout
from amg.media import load_audio

log = logging.getLogger(__name__)


@dataclass
class MotionOptions:
    """How head motion is made for a new speech (see `amg motion`)."""

    pose: str = "generate"  # generate | static | replay
    seed: int = 0
    temperature: float = 1.0
    intensity: float = 1.0


def preprocess_avatar(layout: Layout, name: str) -> None:
    """Stage 1 with the options the video was preprocessed with before (else the defaults); cached."""
    from amg.tracking.preprocess import preprocess

    cfg = read_saved_config(PreprocessConfig, layout.preprocess_config(name)) or PreprocessConfig()
    preprocess(layout, name, cfg)


def train_avatar(layout: Layout, name: str, cfg: AvatarConfig, max_minutes: float | None = None) -> list[str]:
    """Preprocess and train every stage of avatar `name` that has no finished checkpoint; return what was trained."""
    from amg.gan.train import gan_trained, train_gan
    from amg.motion.stage import motion_trained, train_motion

    preprocess_avatar(layout, name)
    trained = []
    if not motion_trained(layout, name):
        train_motion(layout, name, cfg.motion)
        trained.append("motion")
    if not gan_trained(layout, name):
        train_gan(layout, name, cfg.gan, max_minutes)
        trained.append("gan")
    return trained


def render(layout: Layout, audio_name: str, video_name: str, options: MotionOptions, cfg: RenderConfig) -> Path:
    """Speech `audio_name` → `output_data/AUDIO_to_VIDEO/generated_video.mp4` with the trained avatar."""
    from amg.gan.inference import AvatarGenerator
    from amg.motion.stage import predict_motion
    from amg.output import FullFramePaster, first_frame, write_generated_video
    from amg.tracking.tracks import Tracks

    motion = predict_motion(
        layout, audio_name, video_name, options.pose, options.seed, options.temperature, options.intensity
    )
    generator = AvatarGenerator(layout, video_name, engine=cfg.engine)
    frames = generator.frames(motion, cfg.chunk)
    if cfg.full_frame:
        window = Tracks.load(layout.tracks(video_name)).window
        paste = FullFramePaster(first_frame(layout.video_source(video_name)), window, cfg.feather)
        frames = (paste(frame) for frame in frames)
    audio = load_audio(layout.audio_source(audio_name))
    path = layout.generated_video(audio_name, video_name)
    return write_generated_video(path, frames, motion.n_frames, audio, cfg.crf)


def run(
    layout: Layout,
    audio_name: str,
    video_name: str,
    avatar_cfg: AvatarConfig,
    options: MotionOptions | None = None,
    render_cfg: RenderConfig | None = None,
    max_minutes: float | None = None,
) -> tuple[Path, list[str]]:
    """Train what the avatar lacks, then render; returns the video's path and the stages trained on the way."""
    layout.audio_source(audio_name)  # fail on a missing speech file before hours of training, not after
    trained = train_avatar(layout, video_name, avatar_cfg, max_minutes)
    path = render(layout, audio_name, video_name, options or MotionOptions(), render_cfg or RenderConfig())
    return path, trained
