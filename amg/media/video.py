"""Video probing, constant-rate frame decoding and H.264/AAC mp4 writing, all through PyAV."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Iterator

import av
import cv2
import numpy as np

from amg.core.errors import MediaError
from amg.core.fsutil import atomic_path

PathLike = str | os.PathLike[str]

# Padding a few missing frames at the end is normal (durations are rounded, containers estimate them);
# a stream that stops this many seconds before its stated duration is truncated, and padding would
# silently freeze the picture for the rest of it.
MAX_MISSING_TAIL_S = 1.0

# The mp4 audio is always AAC at 48 kHz, whatever the input rate: every player handles it, and the decoder
# pads the last 1024-sample AAC frame with at most 21 ms of silence (64 ms at 16 kHz).
AAC_SAMPLE_RATE = 48_000
AAC_BIT_RATE = 128_000

# FFmpeg's AVColorSpace and AVColorRange codes of BT.601 and limited ("TV", 16-235) range.
BT601_MATRIX, LIMITED_RANGE = 6, 1  # AVCOL_SPC_SMPTE170M, AVCOL_RANGE_MPEG


@contextlib.contextmanager
def open_input(path: PathLike, kind: str) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading and turn every FFmpeg failure inside the block into a MediaError.

    `kind` ("video", "media file") only words the message. Decoding errors raised while the caller
    iterates inside the block (corrupt packets mid-stream) are converted too.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise MediaError(f"{path} is not a readable {kind} ({e.strerror or e})") from e
    with container:
        try:
            yield container
        except av.FFmpegError as e:
            raise MediaError(f"{path} is corrupt: decoding failed ({e.strerror or e})") from e


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as a player would show it."""

    path: Path
    width: int  # display size: after the rotation below is applied
    height: int
    fps: float  # average source frame rate; 0.0 if the file does not say
    duration: float  # seconds
    rotation: int  # clockwise degrees (0/90/180/270) to turn decoded frames upright, as phones tag it
    codec: str
    has_audio: bool

    def n_frames(self, fps: float = 25) -> int:
        """Number of frames `iter_frames(path, fps)` yields: the duration at `fps`, rounded half up."""
        return max(1, math.floor(self.duration * fps + 0.5))


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video's geometry, rate, duration, rotation and codec; MediaError if it is not a usable video."""
    path = Path(path)
    with open_input(path, "video") as container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video track")
        stream = container.streams.video[0]
        # The display matrix is only exposed on decoded frames (PyAV has no stream side-data reader).
        first = next(container.decode(stream), None)
        if first is None:
            raise MediaError(f"{path} has a video track but no frame could be decoded")
        # VideoFrame.rotation is FFmpeg's counter-clockwise display angle; store the clockwise one.
        rotation = round(-first.rotation / 90) * 90 % 360
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        duration = _header_duration(container, stream)
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=float(stream.average_rate or stream.guessed_rate or 0),
            duration=duration if duration is not None else _demuxed_duration(path),
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def _header_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """The duration the file declares: the video stream's own, else the container's; None if neither."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _demuxed_duration(path: Path) -> float:
    """Duration from packet timestamps, for files whose header has none (e.g. live-recorded WebM).

    Demuxing without decoding reads the file once but costs almost nothing compared to decoding it.
    """
    with open_input(path, "video") as container:
        stream = container.streams.video[0]
        start, end = math.inf, -math.inf
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                start = min(start, packet.pts * packet.time_base)
                end = max(end, (packet.pts + packet.duration) * packet.time_base)
    if start > end:
        raise MediaError(f"{path} has no video timestamps, so its duration is unknown")
    return float(end - start)


def iter_frames(path: PathLike, fps: float = 25) -> Iterator[np.ndarray]:
    """Stream a video's frames upright as RGB uint8 (H, W, 3), resampled to a constant `fps`.

    Output frame i covers [i/fps, (i+1)/fps) and shows what a player shows at its centre, (i+0.5)/fps:
    the latest source frame whose timestamp (relative to the first frame) is <= that time. Source frames
    are repeated or dropped as needed, so variable-frame-rate input comes out at a constant rate.
    Exactly `probe_video(path).n_frames(fps)` frames are yielded; if the stream ends a little early
    the last frame is repeated. Frames are decoded as they are consumed: memory does not grow with length.
    """
    path = Path(path)
    info = probe_video(path)
    with open_input(path, "video") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        timed = _timed_frames(path, container.decode(stream), info.duration)
        for frame in _frames_at_rate(timed, info.n_frames(fps), Fraction(fps)):
            # A fresh array per output frame: callers may draw on it, and repeats must not share memory.
            yield np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=-info.rotation // 90))


def _timed_frames(
    path: Path, frames: Iterator[av.VideoFrame], duration: float
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Pair each decoded frame with its time in seconds since the first frame; catch truncated files."""
    origin = last = None
    for frame in frames:
        if frame.pts is None or frame.time_base is None:
            raise MediaError(f"{path} has video frames without timestamps")
        time = frame.pts * frame.time_base
        origin = time if origin is None else origin
        last = time - origin
        yield last, frame
    if last is None:
        raise MediaError(f"{path} has a video track but no frame could be decoded")
    if last < duration - MAX_MISSING_TAIL_S:
        raise MediaError(f"{path} is truncated: video stops at {float(last):.2f} s of {duration:.2f} s")


def _frames_at_rate(
    timed: Iterator[tuple[Fraction, av.VideoFrame]], n_frames: int, fps: Fraction
) -> Iterator[av.VideoFrame]:
    """For each output slot i, the latest source frame shown at the slot's centre (see iter_frames)."""
    _, shown = next(timed)
    upcoming = next(timed, None)
    for i in range(n_frames):
        centre = (i + Fraction(1, 2)) / fps
        while upcoming is not None and upcoming[0] <= centre:
            shown = upcoming[1]
            upcoming = next(timed, None)
        yield shown


class VideoWriter:
    """Encode RGB frames to an H.264 (yuv420p) mp4 at a constant `fps`, with optional mono AAC audio.

        with VideoWriter("out.mp4", fps=25, audio=samples) as writer:
            for frame in frames:
                writer.write(frame)

    The file appears at `path` only when the block succeeds; if it raises, nothing is left there.
    `audio` (float32 mono at `sample_rate`) may also be assigned to the attribute after construction,
    up to the first write(): the mp4 header listing the tracks is written with the first frame, and
    audio is interleaved with the video as frames arrive; a later assignment raises. Its length is
    fitted to the frames: trimmed or zero-padded so that the audio lasts exactly n_frames / fps,
    however many frames come, so callers need not know the frame count in advance.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float = 25,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.metadata = metadata or {}  # container tags (any key: written as mp4 mdta tags)
        # Snap float rates to the rational they stand for (30000/1001 given as 29.97002997...).
        self.fps = Fraction(fps).limit_denominator(1001)
        self.sample_rate = sample_rate
        self.crf = crf
        self.preset = preset
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._video_stream: av.VideoStream | None = None
        self._audio_stream: av.AudioStream | None = None
        self._shape: tuple[int, ...] | None = None
        self._n_frames = 0
        self._n_samples = 0
        self._audio_start = 0  # sample number of self._audio[0]
        self.audio = audio

    @property
    def audio(self) -> np.ndarray | None:
        return self._audio

    @audio.setter
    def audio(self, samples: np.ndarray | None) -> None:
        if self._video_stream is not None:
            raise RuntimeError("VideoWriter.audio must be set before the first frame is written")
        self._audio = None if samples is None else np.asarray(samples, np.float32).reshape(-1)

    def __enter__(self) -> VideoWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        options = {"movflags": "use_metadata_tags"} if self.metadata else {}
        self._container = self._stack.enter_context(av.open(str(tmp), "w", options=options))
        self._container.metadata.update(self.metadata)
        # Runs first on exit: flush the encoders only on success, before the container writes its
        # trailer and atomic_path renames (or, on any error, deletes) the temporary file.
        self._stack.push(self._flush_on_success)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._stack.__exit__(exc_type, exc, tb)

    def write(self, frame: np.ndarray, sound: np.ndarray | None = None) -> None:
        """Append one RGB uint8 (H, W, 3) frame; every frame must have the first frame's size. `sound`: samples
        to append to the audio (a live stream's, which comes with its frames; declare the track with `audio` = an
        empty array)."""
        if sound is not None:
            if self._audio is None:
                raise RuntimeError("VideoWriter.write(sound=...) needs an audio track: construct it with audio=[]")
            self._audio = np.concatenate([self._audio, np.asarray(sound, np.float32).reshape(-1)])
        if self._container is None:
            raise RuntimeError("VideoWriter.write() called outside its `with` block")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
        if self._shape is None:
            self._open_streams(frame.shape[1], frame.shape[0])
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise ValueError(f"frame size changed from {self._shape} to {frame.shape}")
        video_frame = av.VideoFrame.from_ndarray(_pad_to_even(frame), format="rgb24")
        video_frame.pts = self._n_frames
        self._container.mux(self._video_stream.encode(video_frame))
        self._n_frames += 1
        if self._audio_stream is not None:
            self._write_audio_until(round(self._n_frames * self.sample_rate / self.fps))

    def _open_streams(self, width: int, height: int) -> None:
        video = self._container.add_stream("libx264", rate=self.fps)
        video.width, video.height = width + width % 2, height + height % 2
        video.pix_fmt = "yuv420p"
        # Say which matrix the encoder converts RGB with (swscale's default, BT.601, limited range): untagged, players
        # guess BT.709 for HD sizes and shift the colours.
        video.codec_context.colorspace = BT601_MATRIX
        video.codec_context.color_range = LIMITED_RANGE
        # Frame i gets pts i in a 1/fps time base, so every frame lasts exactly one tick: constant rate.
        video.codec_context.time_base = 1 / self.fps
        video.options = {"crf": str(self.crf), "preset": self.preset}
        self._video_stream = video
        if self._audio is not None:
            # PyAV's encoder resamples what it is given (rate, sample format, frame size) by itself.
            self._audio_stream = self._container.add_stream("aac", rate=AAC_SAMPLE_RATE, layout="mono")
            self._audio_stream.bit_rate = AAC_BIT_RATE

    def _write_audio_until(self, end: int) -> None:
        """Encode the audio up to sample `end`, zero-padded past the end of `self.audio`."""
        if end <= self._n_samples:
            return
        chunk = np.zeros(end - self._n_samples, np.float32)
        given = self._audio[self._n_samples - self._audio_start : end - self._audio_start]
        chunk[: len(given)] = given
        # What is encoded is not needed again: memory stays flat for a long stream.
        self._audio, self._audio_start = self._audio[end - self._audio_start :], end
        audio_frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        audio_frame.sample_rate = self.sample_rate
        audio_frame.pts = self._n_samples
        audio_frame.time_base = Fraction(1, self.sample_rate)
        self._container.mux(self._audio_stream.encode(audio_frame))
        self._n_samples = end

    def _flush_on_success(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            return
        if self._video_stream is None:
            raise ValueError(f"no frames were written to {self.path}")
        self._container.mux(self._video_stream.encode(None))
        if self._audio_stream is not None:
            self._container.mux(self._audio_stream.encode(None))


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """yuv420p subsamples chroma 2x2, so H.264 needs even sizes: replicate the last row/column."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Write `frames` (RGB uint8) to an mp4 with VideoWriter; see it for the audio and atomicity rules."""
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in frames:
            writer.write(frame)


def resized_frames(path: PathLike, size: int) -> Iterator[np.ndarray]:
    """The frames of a preprocessed (square) video at the generator's size, decoded one by one."""
    return (cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in iter_frames(path))


def pick_frames(
    frames: Iterable[np.ndarray], index: np.ndarray, keep: Callable[[int, np.ndarray], np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """The frames at `index` (any order, repeats allowed) of a decoded stream, in one pass that stops at the
    last one wanted, each as `keep(i, frame)` makes it (a part of frame i) when given: memory grows with what is
    kept of the frames picked, not with the video."""
    return _picked(frames, [(index, keep)])[0]


@dataclass(frozen=True)
class FrameBank:
    """Something made of some frames of a video: the frames at `index`, each kept as `keep` makes it (as
    pick_frames), then `make(kept)` with kept {frame number: what was kept}."""

    index: np.ndarray
    make: Callable[[dict[int, np.ndarray]], object]
    keep: Callable[[int, np.ndarray], np.ndarray] | None = None


def make_banks(frames: Iterable[np.ndarray], banks: list[FrameBank]) -> list:
    """Each bank's object, its frames picked in the same single pass over `frames` (a video decoded once for all
    of them, not once each)."""
    picked = _picked(frames, [(bank.index, bank.keep) for bank in banks])
    return [bank.make(kept) for bank, kept in zip(banks, picked)]


def _picked(frames: Iterable[np.ndarray], requests: list[tuple[np.ndarray, Callable | None]]) -> list[dict]:
    wanted = [set(np.asarray(index).tolist()) for index, _ in requests]
    last = max((max(numbers) + 1 for numbers in wanted if numbers), default=0)
    picked: list[dict[int, np.ndarray]] = [{} for _ in requests]
    for i, frame in enumerate(islice(frames, last)):
        for numbers, (_, keep), kept in zip(wanted, requests, picked):
            if i in numbers:
                kept[i] = frame if keep is None else keep(i, frame)
    return picked
