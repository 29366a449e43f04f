"""`amg run`: the whole product in order. Each stage caches its outputs, so only what is missing runs.

    1. preprocess the avatar video           amg.tracking.preprocess   (cached in input_data/video/NAME/processed)
    2. audio features of the driving speech  amg.audio.features        (cached beside the audio)
    3. audio → expression, head motion, body amg.motion                (trained once per avatar)
    4. conditioning images                   amg.conditioning
    5. image GAN                             amg.gan                    (trained once per avatar)
    6. face refiner (--enhance)              amg.enhance                (trained once per avatar)
    7. the mp4 with the speech muxed in      amg.media.output

`amg eval` is the same training on the first part of the video only, then amg.evaluation on the rest.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from amg.config import AvatarConfig, MotionOptions, PreprocessConfig, RenderConfig, read_saved_config
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.media import load_audio

if TYPE_CHECKING:  # evaluation loads torch: imported where used, so `amg --help` stays instant
    from amg.evaluation.records import EvalOptions

log = logging.getLogger(__name__)


def preprocess_avatar(layout: Layout, name: str) -> None:
    """Stage 1 with the options the video was preprocessed with before (else the defaults); cached. An avatar
    learns its lip-sync from its video's speech: one without sound stops here, before anything else is said of
    it (the held-out tail `amg eval` asks for, say)."""
    from amg.tracking.preprocess import preprocess

    cfg = read_saved_config(PreprocessConfig, layout.preprocess_config(name)) or PreprocessConfig()
    preprocess(layout, name, cfg)
    if not layout.audio_wav(name).is_file():
        raise AmgError(
            f"Video {name!r} has no sound: an avatar learns its lip-sync from the speech in its own video. Use a "
            "video of the person talking, with its sound."
        )


def train_avatar(
    layout: Layout, name: str, cfg: AvatarConfig, max_minutes: float | None = None, enhance: bool = False
) -> list[str]:
    """Preprocess and train every stage of avatar `name` that `cfg` leaves something to train in (the face
    refiner only when `enhance`); return the stages trained."""
    from amg.stages import train_stages

    preprocess_avatar(layout, name)
    return list(train_stages(layout, name, cfg, lambda stage: stage.required or enhance, max_minutes=max_minutes))


def render(
    layout: Layout, audio_name: str, video_name: str, options: MotionOptions, cfg: RenderConfig, generator=None
) -> Path:
    """Speech `audio_name` → `output_data/AUDIO_to_VIDEO/generated_video.mp4` with the trained avatar (and, with
    `cfg.enhance`, `generated_superes.mp4` beside it, made in the same pass). `generator`: the avatar's
    AvatarGenerator when the caller keeps it loaded (the service), else it is loaded here."""
    from amg.enhance.inference import FaceEnhancer, with_refined_copy
    from amg.gan.inference import AvatarGenerator
    from amg.media.output import GeneratedVideoWriter, write_generated_video
    from amg.media.provenance import Provenance
    from amg.motion.inference import predict_motion

    motion = predict_motion(layout, audio_name, video_name, options)
    enhancer = None
    if cfg.enhance:
        enhancer = FaceEnhancer(layout, video_name, cfg.upscale, engine=cfg.engine, precision=cfg.precision)
    generator = generator or AvatarGenerator(layout, video_name, engine=cfg.engine, precision=cfg.precision)
    framing, detail = None, None
    if cfg.framing == "source":
        framing, detail = generator.source_banks(layout, video_name, cfg.feather, cfg.native_detail)
    frames = generator.frames(motion, cfg.chunk, detail=detail)
    paste = framing.paster(motion.body) if framing else None
    audio = load_audio(layout.audio_source(audio_name))
    path = layout.generated_video(audio_name, video_name)
    provenance = Provenance.new(video_name, audio_name)  # one render: both files say the same
    label = cfg.label or None
    with contextlib.ExitStack() as stack:
        if enhancer is not None:
            superes_path = layout.generated_superes(audio_name, video_name)
            superes = stack.enter_context(GeneratedVideoWriter(superes_path, audio, cfg.crf, provenance, label))
            superes_paste = framing.paster(motion.body) if framing else None  # its own backdrop choices, the same
            write = superes.write if superes_paste is None else (lambda frame: superes.write(superes_paste(frame)))
            frames = with_refined_copy(frames, enhancer, motion.landmarks, motion.size, write)
        if paste is not None:
            frames = (paste(frame) for frame in frames)
        return write_generated_video(path, frames, motion.n_frames, audio, cfg.crf, provenance, label)


def evaluate_avatar(
    layout: Layout, name: str, cfg: AvatarConfig, options: EvalOptions, max_minutes: float | None = None
) -> dict:
    """`amg eval`: train what avatar `name` lacks on the first 1 - holdout of its video only, then evaluate it on
    the held-out tail (and any other speech of `options`) and write the report."""
    from amg.config import trained_holdouts
    from amg.evaluation.evaluate import check_unseen, evaluate_trained_avatar, held_out_start
    from amg.tracking.tracks import Tracks

    for audio_name in options.audios:
        layout.audio_source(audio_name)  # a missing speech file fails now, not after the training
    preprocess_avatar(layout, name)
    n_frames = Tracks.load(layout.tracks(name)).n_frames
    # Before any training: a finished or half-trained avatar with a smaller holdout is never trained further.
    check_unseen(layout, name, n_frames, held_out_start(n_frames, options.holdout), trained_holdouts(layout, name))
    train_avatar(layout, name, replace(cfg, holdout=options.holdout), max_minutes, enhance=options.enhance)
    return evaluate_trained_avatar(layout, name, options)


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
