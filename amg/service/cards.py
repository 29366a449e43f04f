"""What the web page shows of each avatar besides its state (amg.service.state.Service.avatar_view): who it is
(a still of its video), how it is trained (preset, resolution), how long its video is, how much disk it takes,
and the latest sample grid of its image GAN's training. Read again only when a file changed: the page's event
stream asks twice a second."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from amg.config import GanConfig, read_saved_config
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.service.state import Service
from amg.service.worker import training_config

STILL_WIDTH = 320  # px: a card's picture


def avatar_card(service: Service, name: str) -> dict:
    """avatar_view(name) and the card's details; a URL is None where there is nothing to show yet."""
    layout = service.layout
    options = _last_training_options(service, name)
    video = _video_source(layout, name)
    sample = latest_sample(layout, name)
    return service.avatar_view(name) | {
        "preset": options.get("preset", "default") if options is not None else None,  # older jobs: the default
        "size_px": _size_px(layout, name, options),
        "video_s": None if video is None else _video_seconds(str(video), _mtime(video)),
        "disk_mb": round(_disk_bytes(layout.video_dir(name), layout.checkpoint_dir(name)) / 2**20, 1),
        "still_url": None if video is None else f"/api/avatars/{name}/still?v={_mtime(video)}",
        "sample_url": None if sample is None else f"/api/avatars/{name}/sample?v={sample.stem}",
    }


def avatar_names(layout: Layout) -> list[str]:
    """Every avatar: a video folder, a checkpoint folder, or both."""
    names = set()
    for folder in (layout.videos_dir(), layout.checkpoints_dir()):
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir()}
    return sorted(names)


def latest_sample(layout: Layout, name: str) -> Path | None:
    """The image GAN's latest sample grid (conditioning | warp | generated | real), or None before the first."""
    folder = layout.gan_samples_dir(name)
    samples = sorted(folder.glob("step_*.jpg")) if folder.is_dir() else []  # zero-padded steps: sorted by step
    return samples[-1] if samples else None


def still_jpeg(video: Path) -> bytes:
    """A small JPEG of `video` 1.5 s in (the very first frame is often a fade-in or a blink), or of its first
    frame when it is shorter."""
    return _still(str(video), _mtime(video))


def _video_source(layout: Layout, name: str) -> Path | None:
    try:
        return layout.video_source(name)
    except AmgError:  # a checkpoint folder left without its video
        return None


def _last_training_options(service: Service, name: str) -> dict | None:
    """The options (preset, overrides) of avatar `name`'s latest training job; None if it has none."""
    job = service.store.last(name, "train")
    return None if job is None else json.loads(job.options)


def _size_px(layout: Layout, name: str, options: dict | None) -> int | None:
    """The generator's resolution: as trained when its config is saved, else as its training job asks (none yet
    where it is the preprocessed crop's, which the job has not chosen)."""
    saved = layout.gan_config(name)
    if saved.is_file():
        return _saved_gan_size(str(saved), _mtime(saved))
    if options is None:
        return None
    try:
        return training_config(options).gan.size or None
    except AmgError:  # a job whose options no longer load: its card shows no size
        return None


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


@functools.lru_cache(maxsize=256)
def _saved_gan_size(path: str, mtime: int) -> int | None:
    cfg = read_saved_config(GanConfig, path)
    return None if cfg is None else cfg.size


@functools.lru_cache(maxsize=256)
def _video_seconds(path: str, mtime: int) -> float | None:
    from amg.media import probe_video

    try:
        return round(probe_video(path).duration, 1)
    except AmgError:
        return None


@functools.lru_cache(maxsize=64)
def _still(path: str, mtime: int) -> bytes:
    import itertools

    import cv2

    from amg.media import iter_frames

    frame = list(itertools.islice(iter_frames(path, fps=1), 2))[-1]  # at 1 fps, frame 1 shows 1.5 s in
    height = round(frame.shape[0] * STILL_WIDTH / frame.shape[1])
    small = cv2.resize(frame, (STILL_WIDTH, height), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _disk_bytes(*folders: Path) -> int:
    """What the folders' files take (a linked file counts as its link: it is not the avatar's to free)."""
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total
