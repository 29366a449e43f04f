"""`amg run`: the whole product in order. Each stage caches its outputs, so only what is missing runs.

    1. preprocess the avatar video           amg.tracking.preprocess   (cached in input_data/video/NAME/processed)
    2. audio features of the driving speech  amg.audio.features        (cached beside the audio)
    3. audio → expression, head motion, body amg.motion                (trained once per avatar)
    4. conditioning images                   amg.render
    5. image GAN                             amg.gan                    (trained once per avatar)
    6. face refiner (--enhance)              amg.enhance                (trained once per avatar)
    7. the mp4 with the speech muxed in      amg.output
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from amg.config import AvatarConfig, MotionOptions, PreprocessConfig, RenderConfig, read_saved_config
from amg.layout import Layout
from amg.media import load_audio

log = logging.getLogger(__name__)


def preprocess_avatar(layout: Layout, name: str) -> None:
    """Stage 1 with the options the video was preprocessed with before (else the defaults); cached."""
    from amg.tracking.preprocess import preprocess

    cfg = read_saved_config(PreprocessConfig, layout.preprocess_config(name)) or PreprocessConfig()
    preprocess(layout, name, cfg)


def train_avatar(
    layout: Layout, name: str, cfg: AvatarConfig, max_minutes: float | None = None, enhance: bool = False
) -> list[str]:
    """Preprocess and train every stage of avatar `name` that has no finished checkpoint (the face refiner only
    when `enhance`); return what was trained."""
    from amg.enhance.train import enhance_trained, train_enhancer
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
    if enhance and not enhance_trained(layout, name):
        train_enhancer(layout, name, cfg.enhance, max_minutes)
        trained.append("enhance")
    return trained


def render(
    layout: Layout, audio_name: str, video_name: str, options: MotionOptions, cfg: RenderConfig, generator=None
) -> Path:
    """Speech `audio_name` → `output_data/AUDIO_to_VIDEO/generated_video.mp4` with the trained avatar (and, with
    `cfg.enhance`, `generated_superes.mp4` beside it, made in the same pass). `generator`: the avatar's
    AvatarGenerator when the caller keeps it loaded (the service), else it is loaded here."""
    from amg.enhance.inference import FaceEnhancer, with_refined_copy
    from amg.gan.inference import AvatarGenerator
    from amg.media import VideoWriter
    from amg.motion.stage import predict_motion
    from amg.output import FullFramePaster, first_frame, write_generated_video
    from amg.tracking.tracks import Tracks

    motion = predict_motion(layout, audio_name, video_name, options)
    enhancer = FaceEnhancer(layout, video_name, cfg.upscale, engine=cfg.engine) if cfg.enhance else None
    generator = generator or AvatarGenerator(layout, video_name, engine=cfg.engine)
    frames = generator.frames(motion, cfg.chunk)
    paste = None
    if cfg.full_frame:
        window = Tracks.load(layout.tracks(video_name)).window
        paste = FullFramePaster(first_frame(layout.video_source(video_name)), window, cfg.feather)
    audio = load_audio(layout.audio_source(audio_name))
    path = layout.generated_video(audio_name, video_name)
    with contextlib.ExitStack() as stack:
        if enhancer is not None:
            superes = stack.enter_context(
                VideoWriter(layout.generated_superes(audio_name, video_name), fps=25, audio=audio, crf=cfg.crf)
            )
            write = superes.write if paste is None else (lambda frame: superes.write(paste(frame)))
            frames = with_refined_copy(frames, enhancer, motion.landmarks, motion.size, write)
        if paste is not None:
            frames = (paste(frame) for frame in frames)
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
    render_cfg = render_cfg or RenderConfig()
    options = options or MotionOptions()
    trained = train_avatar(layout, video_name, avatar_cfg, max_minutes, enhance=render_cfg.enhance)
    path = render(layout, audio_name, video_name, options, render_cfg)
    return path, trained
