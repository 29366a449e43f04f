"""Media I/O: probe and decode videos, load audio, write mp4 and WAV files (all through PyAV)."""

from amg.media.audio import load_audio, write_wav
from amg.media.video import (
    FrameBank,
    VideoInfo,
    VideoWriter,
    iter_frames,
    make_banks,
    pick_frames,
    probe_video,
    resized_frames,
    write_video,
)

__all__ = [
    "VideoInfo",
    "probe_video",
    "iter_frames",
    "resized_frames",
    "pick_frames",
    "FrameBank",
    "make_banks",
    "VideoWriter",
    "write_video",
    "load_audio",
    "write_wav",
]
