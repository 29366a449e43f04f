"""`amg live`: speech in, the avatar's frames out as it is spoken, on a CPU.

The stages of `amg run` (amg.pipeline), fed in chunks: audio features (amg.audio.stream), motion
(amg.motion.stream), the generator (amg.gan.inference.FrameStream), with the same code as a file. A frame is made
once `lookahead` frames of speech past it are in; the latency from a sound to the frame showing it is

    the frame itself (40 ms) + lookahead × 40 ms + 72 ms (the last 10 ms windows and the VAD chunk past the
    frame's middle) + the wait for the next audio chunk + the motion and generator compute,

about 0.5-0.6 s with the defaults on 2 cores (benchmarks/live.py). A frame that would come later than
`max_latency_s` after its sound is dropped (the previous image is repeated and counted), so a slow machine
shows fewer distinct frames but stays in sync with the sound.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from amg.audio.features import FRAME_HOP, SAMPLE_RATE, SpeechStats
from amg.audio.stream import FeatureStream
from amg.config import FPS, LiveConfig, MotionOptions, RenderConfig
from amg.core.layout import Layout
from amg.core.tensors import to_uint8
from amg.media import VideoWriter
from amg.media.audio import clean_samples
from amg.media.marks import Marker
from amg.media.provenance import Provenance
from amg.media.watermark import Payload

if TYPE_CHECKING:  # the generator loads torch: imported where used
    from amg.gan.inference import PendingInputs


@dataclass
class LiveFrame:
    index: int  # frame number: it shows the sound of [index / 25, (index + 1) / 25) s of the stream
    image: np.ndarray  # (H, W, 3) RGB uint8: the avatar video's own frame, or the generator's crop (live.framing)
    audio: np.ndarray  # (640,) float32: the frame's own 40 ms of the speech
    dropped: bool  # not generated (the machine fell behind): the image of the frame before
    latency_s: float  # from the arrival of the frame's first sound to this frame being ready


class LiveSession:
    """One live stream of avatar `name`: push 16 kHz mono chunks as they arrive; `on_frame` gets every frame, in
    order, as soon as it is ready (from the generator's thread, which runs while the next inputs are built).

    `stats`: fixed speech statistics to normalise the features with (else estimated as the stream goes;
    amg.audio.stream). `generator`: the avatar's AvatarGenerator when the caller keeps it loaded.
    """

    def __init__(
        self,
        layout: Layout,
        name: str,
        on_frame: Callable[[LiveFrame], None],
        options: MotionOptions | None = None,
        cfg: LiveConfig | None = None,
        generator=None,
        stats: SpeechStats | None = None,
    ):
        from amg.gan.inference import AvatarGenerator, FrameStream
        from amg.motion.inference import motion_trained, untrained_motion_error
        from amg.motion.stream import MotionModels, MotionStream

        self.cfg = cfg or LiveConfig()
        options = options or MotionOptions()
        if not motion_trained(layout, name):
            raise untrained_motion_error(layout, name)
        models = MotionModels.load(layout, name, options.pose)
        keep = self.cfg.history + self.cfg.lookahead + 4 * self.cfg.chunk + 50
        self.features = FeatureStream(models.cfg.features, stats, keep=keep)
        self.motion = MotionStream(models, options, self.cfg.lookahead, self.cfg.history)
        self.generator = generator or AvatarGenerator(
            layout, name, engine=self.cfg.engine, precision=self.cfg.precision
        )
        self.frames = FrameStream(self.generator)
        # Source framing: each frame pasted into the avatar video's own frame over real frames that follow the
        # generated body, as a file's are (amg.pipeline.render); `body` is the body of the frame being pasted.
        self.body = np.zeros((4, 3), np.float32)
        source = self.cfg.framing == "source"
        self.framing, self.detail = None, None
        if source:
            banks = self.generator.source_banks(layout, name, RenderConfig.feather, self.cfg.native_detail)
            self.framing, self.detail = banks
        self.paste = self.framing.paster(lambda: self.body) if self.framing else None
        # Every frame that leaves the session is marked as synthetic, as a file's are (amg.media.marks).
        self.marker = Marker(Payload.of(name, uuid.uuid4().hex), self.cfg.label or None)
        self.on_frame = on_frame
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="amg-live")
        self.pending: list[Future] = []
        self.audio = np.zeros(0, np.float32)  # samples of frames audio_start / FRAME_HOP, ...
        self.audio_start = 0
        self.arrivals: list[tuple[int, float]] = []  # (samples received, when spoken), recent pushes
        self.last_image: np.ndarray | None = None
        self.dropped = 0
        # Compute per stage: "inputs" (conditioning, candidate choice, the warps' maps) in this thread; "warps"
        # (resampling the candidates by those maps) and "generator" in the generator's.
        self.seconds = dict.fromkeys(("features", "motion", "inputs", "warps", "generator"), 0.0)

    @property
    def size(self) -> int:
        return self.generator.size

    @property
    def frame_size(self) -> tuple[int, int]:
        """The frames' width and height: the avatar video's (source framing) or the generator's crop's."""
        return (self.size, self.size) if self.framing is None else self.framing.size

    def push(self, samples: np.ndarray, spoken_at: float | None = None) -> None:
        """Add the next chunk of speech, whose last sample was spoken (captured) at `spoken_at` on
        time.monotonic()'s clock (default: now)."""
        samples = clean_samples(samples)
        started = time.monotonic()
        self.features.push(samples)
        self.seconds["features"] += time.monotonic() - started
        self.audio = np.concatenate([self.audio, samples])
        self.arrivals.append((self.features.received, started if spoken_at is None else spoken_at))
        self._check_worker()
        # A step per `chunk` new frames: each step recomputes a window, so steps for single frames cost more.
        if self.features.available - self.cfg.lookahead - self.motion.emitted >= self.cfg.chunk:
            self._step(final=False)

    def finish(self) -> None:
        """The speech has ended: make the remaining frames and wait for all of them."""
        started = time.monotonic()
        self.features.finish()
        self.seconds["features"] += time.monotonic() - started
        self._step(final=True)
        self.worker.shutdown(wait=True)
        self._check_worker()

    def _check_worker(self) -> None:
        """Raise here what failed in the generator's thread."""
        while self.pending and self.pending[0].done():
            self.pending.pop(0).result()

    def _arrival(self, frame: int) -> float:
        """When the first sample of `frame` was spoken."""
        sample = frame * FRAME_HOP
        for received, when in self.arrivals:
            if received > sample:
                return when
        return self.arrivals[-1][1]

    def _step(self, final: bool) -> None:
        started = time.monotonic()
        motion = self.motion.advance(self.features, final)  # reads the features: their embeddings count here
        self.seconds["motion"] += time.monotonic() - started
        if motion is not None:
            self.frames.push(motion)
        stop = self.frames.ready(final)
        while self.frames.done < stop:
            start = self.frames.done
            end = min(start + self.cfg.chunk, stop)
            started = time.monotonic()
            prepared = self.frames.prepare(end, final)
            self.seconds["inputs"] += time.monotonic() - started
            sounds = [self._frame_audio(i) for i in range(start, end)]
            arrivals = [self._arrival(i) for i in range(start, end)]  # here: the generator's thread reads no state
            self.pending.append(self.worker.submit(self._generate, prepared, sounds, arrivals))
            # Speech pushed faster than it is spoken (a file, a client sending ahead) must not queue without
            # bound: wait for the generator beyond two queued chunks.
            while len(self.pending) > 2:
                self.pending.pop(0).result()
        self._forget(self.frames.done)

    def _generate(self, prepared: PendingInputs, sounds: list[np.ndarray], arrivals: list[float]) -> None:
        """In the generator's thread: the warps and frames of `prepared`; when even the first would be late, only
        the last one (the others repeat the image before, counted as dropped). The candidates are resampled here
        (the speech's thread made their maps): so the two threads share the work about evenly, and a dropped
        frame is neither resampled nor generated."""
        started = time.monotonic()
        start = prepared.start
        late = started - arrivals[0] > self.cfg.max_latency_s and len(prepared) > 1
        made = prepared.last() if late else prepared
        first_made = made.start
        dynamic = self.frames.build(made)
        detail = None if self.detail is None else self.detail.prepare(made.landmarks, made.maps, made.picks)
        warped = time.monotonic()
        self.seconds["warps"] += warped - started
        images = list(to_uint8(self.generator.generate(dynamic)))
        if detail is not None:
            images = [self.detail.compose(image, detail, i) for i, image in enumerate(images)]
        now = time.monotonic()
        self.seconds["generator"] += now - warped
        for offset, (sound, arrival) in enumerate(zip(sounds, arrivals)):
            index = start + offset
            dropped = index < first_made
            if not dropped or self.last_image is None:  # a stream that starts behind repeats its first image
                made_index = max(index - first_made, 0)
                self.last_image = self.marker(self._framed(images[made_index], made.body[made_index]), index)
            self.dropped += dropped
            self.on_frame(LiveFrame(index, self.last_image, sound, dropped, now - arrival))

    def _framed(self, image: np.ndarray, body: np.ndarray) -> np.ndarray:
        if self.paste is None:
            return image
        self.body = body
        return self.paste(image)

    def _frame_audio(self, index: int) -> np.ndarray:
        audio = np.zeros(FRAME_HOP, np.float32)
        part = self.audio[index * FRAME_HOP - self.audio_start : (index + 1) * FRAME_HOP - self.audio_start]
        audio[: len(part)] = part
        return audio

    def _forget(self, frame: int) -> None:
        """Drop the audio and arrival times of frames whose inputs are made."""
        drop = frame * FRAME_HOP - self.audio_start
        if drop > 0:
            self.audio, self.audio_start = self.audio[drop:], frame * FRAME_HOP
        while len(self.arrivals) > 1 and self.arrivals[1][0] <= frame * FRAME_HOP:
            self.arrivals.pop(0)


def chunks_in_real_time(
    samples: np.ndarray, chunk_ms: float, real_time: bool = True
) -> Iterator[tuple[np.ndarray, float]]:
    """`samples` in chunks of `chunk_ms` with the time each one's last sample is spoken, yielded no earlier than
    that (as a microphone delivers them: a consumer that falls behind gets them late, but knows when they were
    spoken); all at once when not `real_time`."""
    step = max(1, int(SAMPLE_RATE * chunk_ms / 1000))
    start = time.monotonic()
    for i in range(0, len(samples), step):
        spoken_at = start + min(i + step, len(samples)) / SAMPLE_RATE
        if real_time:
            time.sleep(max(0.0, spoken_at - time.monotonic()))
        yield samples[i : i + step], spoken_at if real_time else time.monotonic()


def microphone_chunks(chunk_ms: float) -> Iterator[tuple[np.ndarray, float]]:
    """16 kHz mono chunks from the default microphone (PortAudio, through the optional sounddevice package)."""
    from amg.core.errors import AmgError

    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AmgError(
            f"Microphone input needs the sounddevice package and the PortAudio library ({exc}); "
            "or stream a file with --input FILE."
        ) from None
    blocksize = int(SAMPLE_RATE * chunk_ms / 1000)
    with sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=blocksize) as mic:
        while True:
            block, _ = mic.read(blocksize)
            # What was buffered while the renderer worked was spoken earlier than now: by its length.
            yield block[:, 0], time.monotonic() - mic.read_available / SAMPLE_RATE


def run_live(session: LiveSession, chunks: Iterator[tuple[np.ndarray, float]]) -> None:
    """Feed `chunks` to `session` as they come (an interrupt ends the stream as its end would)."""
    try:
        for chunk, spoken_at in chunks:
            session.push(chunk, spoken_at)
    except KeyboardInterrupt:
        pass
    session.finish()


def video_recorder(path: Path, provenance: Provenance) -> tuple[VideoWriter, Callable[[LiveFrame], None]]:
    """`--output FILE.mp4`: a writer (enter it around the stream; the file appears when it ends) and the
    `on_frame` that encodes each frame (marked by the session) with its sound; the file has AMG's metadata."""
    writer = VideoWriter(path, fps=FPS, audio=np.zeros(0, np.float32), metadata=provenance.tags())
    return writer, lambda frame: writer.write(frame.image, frame.audio)
