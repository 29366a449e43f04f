"""Rendering with a trained avatar: predicted motion → conditioning → generator → frames, streamed in chunks."""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from amg.config import FPS, AvatarConfig, GanConfig, config_from_dict
from amg.core.checkpoints import checkpoint_holdout, load_checkpoint
from amg.core.concurrency import prefetch
from amg.core.device import pick_device
from amg.core.errors import AmgError
from amg.core.fsutil import file_digest
from amg.core.layout import Layout
from amg.core.onnx_runtime import OnnxModel, cached_model, export_onnx, inference_engine, quantize_int8, resolved_engine
from amg.core.precision import resolve_precision
from amg.core.split import held_out_split
from amg.core.tensors import to_uint8
from amg.gan.inputs import GeneratorInputs, with_context
from amg.gan.native import NativeDetail, PreparedDetail
from amg.gan.networks import build_generator
from amg.gan.references import AvatarReferences
from amg.media import FrameBank, iter_frames, make_banks
from amg.motion.tracks import MotionTracks, tracked_motion
from amg.tracking.framing import SourceFraming
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)

# The int8 generator's calibration: stretches of consecutive training frames (each frame's temporal context is its
# neighbours) spread over the avatar's video. 4 x 8 frames: with the quantization, 8-10 s at 256 px, 24 s at 512.
CALIBRATION_STRETCHES = 4
CALIBRATION_STRETCH = 8
# Part of the cached int8 model's key: a change to how it is calibrated or quantized makes old ones stale.
INT8_RECIPE = "qdq-u8s8-minmax-own-frames-v1"


def keep_freed_memory() -> None:
    """Let glibc reuse freed memory instead of returning it to the OS and faulting it in again.

    Every chunk allocates ~100 MB of fresh input tensors; served by mmap, each allocation page-faults anew,
    which doubled the cost of building the inputs (measured). Harmless elsewhere: no-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


class AvatarGenerator:
    """A trained avatar's generator (the EMA weights), its candidate bank, and the static inputs encoded once.

    `engine`: "torch", "onnxruntime", "int8" or "auto" (amg.core.onnx_runtime.inference_engine): PyTorch on a GPU;
    on a CPU where the precision policy picks bf16, PyTorch in bf16 or ONNX Runtime in fp32, whichever runs this
    generator faster on this machine (measured once and remembered); else ONNX Runtime in fp32; "int8": ONNX
    Runtime with the generator quantized (calibrated on the avatar's own frames on first use, cached beside the
    checkpoint).
    `precision`: amg.core.precision's auto, fp32, bf16 or fp16 (ONNX Runtime computes in fp32 whatever it is).
    """

    def __init__(
        self,
        layout: Layout,
        name: str,
        device: torch.device | None = None,
        engine: str = "auto",
        precision: str = "auto",
    ):
        path = layout.gan_checkpoint(name)
        if not (path.is_file() and layout.gan_references(name).is_file()):
            raise AmgError(f"Avatar {name!r} has no image generator: run `amg train ... --stage gan` first.")
        state = load_checkpoint(path)
        if not state.get("finished"):
            log.warning(
                "The image GAN of %r is not fully trained (step %d): rendering with it anyway.", name, state["step"]
            )
        self.config = config_from_dict(GanConfig, state["config"])
        keep_freed_memory()
        self.device = device or pick_device()
        refs = AvatarReferences.load(layout.gan_references(name))
        cfg = self.config
        self.precision = resolve_precision(precision, self.device)
        self._banks: dict[tuple, object] = {}  # source_banks' decoded banks
        self._banks_lock = threading.Lock()
        self.inputs = GeneratorInputs(
            refs, cfg.context, cfg.n_candidates, cfg.candidate_hysteresis, self.device, cfg.mouth_hysteresis
        )
        self.generator = build_generator(cfg, self.inputs).to(self.device).eval()
        prefix = "generator_ema."
        weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
        try:
            self.generator.load_state_dict(weights)
        except RuntimeError:
            raise AmgError(
                f"The image generator of {name!r} ({path}) was made by an older AMG whose generator worked "
                f"differently: retrain it with `amg train DATAROOT {name} --stage gan --force`."
            ) from None
        with torch.no_grad():
            self.static_code = self.generator.encode_static(self.inputs.static)
        example = torch.zeros(1, self.inputs.dynamic_channels, self.size, self.size, device=self.device)
        constants = {"static_code": self.static_code, "background": self.inputs.background}
        # In a reduced precision the convolutions run in it; the final blend over the candidates and the plate
        # stays fp32 (the generator's last operations promote), so no banding.
        # self.generate: (B, Cd, H, W) dynamic inputs → (B, 3, H, W) frames in [-1, 1].
        if resolved_engine(engine, self.precision, quantizable=True) == "int8":
            self.engine = "int8"
            self.generate = OnnxModel(self._int8_model(layout, name, example, constants, state), constants)
        else:
            self.engine, self.generate = inference_engine(self.generator, example, constants, engine, self.precision)
        if self.engine == "torch" and self.precision.reduced:  # its inputs in its format, made so by the thread
            self.inputs.use_format(channels_last=True, dtype=self.precision.dtype)

    @property
    def size(self) -> int:
        return self.inputs.size

    def _int8_model(
        self, layout: Layout, name: str, example: torch.Tensor, constants: dict[str, torch.Tensor], state: dict
    ) -> bytes:
        """The generator quantized to int8, cached beside the checkpoint and keyed to it, its references and ONNX
        Runtime's version: made once per trained generator (seconds at 256 px, under a minute at 512)."""
        import onnxruntime

        log.info("Generator engine: ONNX Runtime, quantized to int8.")
        sources = [layout.gan_checkpoint(name), layout.gan_references(name)]
        key = "|".join([INT8_RECIPE, onnxruntime.__version__, *(file_digest(path) for path in sources)])

        def make() -> bytes:
            log.info("Quantizing the generator of %r to int8, calibrated on its own frames (once).", name)
            arrays = {k: v.numpy() for k, v in constants.items()}
            batches = self._calibration_inputs(layout, name, checkpoint_holdout(state)).split(4)
            fp32 = export_onnx(self.generator, example, constants)
            calibration = ({"input": batch.numpy()} | arrays for batch in batches)
            return quantize_int8(fp32, tqdm(calibration, total=len(batches), desc="Calibrating int8", leave=False))

        return cached_model(layout.gan_int8(name), key, make)

    def _calibration_inputs(self, layout: Layout, name: str, holdout: float | None) -> torch.Tensor:
        """The generator's inputs of stretches of the avatar's own training frames, spread over them (its whole
        range of mouth, eyes and pose; a speech's first frames may be silence, which would set the mouth's
        ranges too narrow), built as a render builds them, each frame's candidates kept away from it as in
        training. The held-out tail is never read."""
        tracks = Tracks.load(layout.tracks(name))
        train, _ = held_out_split(tracks.n_frames, AvatarConfig.holdout if holdout is None else holdout)
        length = min(CALIBRATION_STRETCH, train.stop)
        starts = np.linspace(0, train.stop - length, CALIBRATION_STRETCHES).round().astype(int)
        parts = []
        for start in np.unique(starts):
            frames = np.arange(start, start + length)
            stream = FrameStream(self, frames, self.config.reference_exclusion)
            stream.push(tracked_motion(tracks, slice(start, start + length)))
            parts.append(stream.inputs(length, final=True))
        return torch.cat(parts)

    def source_banks(
        self, layout: Layout, name: str, feather: float, detail: bool = True
    ) -> tuple[SourceFraming, NativeDetail | None]:
        """What a source-framed render takes from the avatar video: its own frames around the crop
        (amg.tracking.framing) and, with `detail`, the face boxes at the source's resolution where the window
        holds more pixels than the crop (amg.gan.native; else None). Decoded in one pass at the first call and
        kept with the generator: a service renders many speeches with one loaded avatar, and each bank takes
        seconds to decode at 1080p."""
        wanted = {("framing", feather): lambda: SourceFraming.render_bank(layout, name, feather)}
        if detail:
            wanted[("detail",)] = lambda: NativeDetail.bank(layout, name, self.inputs.refs)
        made = self._kept_banks(layout, name, wanted)
        return made[("framing", feather)], made.get(("detail",))

    def native_detail(self, layout: Layout, name: str) -> NativeDetail | None:
        """source_banks' detail alone (`amg eval` frames the held-out tail with backdrops of its own)."""
        key = ("detail",)
        return self._kept_banks(layout, name, {key: lambda: NativeDetail.bank(layout, name, self.inputs.refs)})[key]

    def _kept_banks(self, layout: Layout, name: str, wanted: dict[tuple, Callable[[], FrameBank | None]]) -> dict:
        """Each wanted bank's object by its key: those not yet kept with the generator decoded together (renders
        and live sessions may ask at once: the second waits for the first's). A generator is one avatar's, so the
        key alone names a bank."""
        with self._banks_lock:
            banks = {key: wanted[key]() for key in wanted if key not in self._banks}
            to_decode = [key for key, bank in banks.items() if bank is not None]
            if to_decode:
                frames = iter_frames(layout.video_source(name), FPS)
                banks.update(zip(to_decode, make_banks(frames, [banks[key] for key in to_decode])))
            self._banks.update(banks)
            return {key: self._banks[key] for key in wanted}

    @torch.no_grad()
    def frames(
        self,
        motion: MotionTracks,
        chunk: int = 32,
        frame_index: np.ndarray | None = None,
        exclusion: int = 0,
        detail: NativeDetail | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the generated RGB uint8 crop frames one by one; the inputs of the next chunk (conditioning,
        retrieval, warps) are built in a background thread while the generator runs (OpenCV and NumPy release
        the GIL). When `motion` replays the avatar's own frames `frame_index`, `exclusion` keeps each frame's
        candidates that many frames away from it, as in training (else the generator would be shown the answer).
        With `detail` (native_detail), each frame is its crop window at the source's resolution instead."""
        stream = FrameStream(self, frame_index, exclusion)
        stream.push(motion)

        def inputs(stop: int) -> tuple[torch.Tensor, PreparedDetail | None]:
            pending = stream.prepare(stop, final=True)
            return stream.build(pending), None if detail is None else detail.prepare(
                pending.landmarks, pending.maps, pending.picks
            )

        chunks = (inputs(min(start + chunk, motion.n_frames)) for start in range(0, motion.n_frames, chunk))
        for dynamic, prepared in prefetch(chunks, depth=2):
            crops = to_uint8(self.generate(dynamic))
            if prepared is None:
                yield from crops
            else:
                yield from (detail.compose(crop, prepared, t) for t, crop in enumerate(crops))


@dataclass
class PendingInputs:
    """Frames start, start + 1, ... whose conditioning (with its temporal context), candidates and warps' maps are
    made: what is left is resampling the candidates (`FrameStream.build`)."""

    start: int
    conditioning: np.ndarray  # (n + 2 context, H, W, C)
    maps: np.ndarray  # (n, K, H, W, 2) the backward maps of the candidates' warps
    picks: np.ndarray  # (n, K) candidate bank entries
    body: np.ndarray  # (n, 4, 3) the generated shoulders and hips (x, y, visibility), crop pixels
    landmarks: np.ndarray  # (n, N, 3) the generated landmarks, crop pixels

    def __len__(self) -> int:
        return len(self.picks)

    def last(self) -> PendingInputs:
        """The last frame alone (with its context)."""
        context = len(self.conditioning) - len(self)  # 2 context
        return PendingInputs(
            self.start + len(self) - 1,
            self.conditioning[-(context + 1) :],
            self.maps[-1:],
            self.picks[-1:],
            self.body[-1:],
            self.landmarks[-1:],
        )


class FrameStream:
    """The generator's inputs for motion that arrives over time (a file's all at once): frame t can be made once
    the conditioning of t + context is known (its temporal context), and retrieval carries its last picks across
    calls, so a stream and a file choose the same candidates. Only the frames still needed are kept."""

    def __init__(self, generator: AvatarGenerator, frame_index: np.ndarray | None = None, exclusion: int = 0):
        self.inputs_of = generator.inputs
        self.frame_index, self.exclusion = frame_index, exclusion
        self.motion: MotionTracks | None = None  # frames base, base + 1, ...
        self.base = 0
        self.done = 0  # frames whose inputs were made (or skipped)
        self.previous = None  # the candidates of the frame before

    @property
    def total(self) -> int:
        return self.base + (0 if self.motion is None else self.motion.n_frames)

    def push(self, motion: MotionTracks) -> None:
        self.motion = motion if self.motion is None else MotionTracks.concatenate([self.motion, motion])

    def ready(self, final: bool = False) -> int:
        """Frames [done, ready) can be made now (all pushed ones when `final`: the last frames' context repeats the
        last frame, as at a file's end)."""
        return self.total if final else max(self.total - self.inputs_of.context, self.done)

    def prepare(self, stop: int, final: bool = False) -> PendingInputs:
        """The first part of the inputs of frames [done, stop), stop <= ready(final): their conditioning, candidate
        picks (each chunk's follow the last chunk's) and the warps' maps. `build` resamples the candidates and
        makes the tensor, in any thread: the two parts cost about the same, so two threads can share them."""
        if not self.done < stop <= self.ready(final):
            raise ValueError(f"frames {self.done}-{stop} cannot be made yet (ready: {self.ready(final)})")
        inputs, m, start = self.inputs_of, self.motion, self.done
        frames = with_context(start, stop, inputs.context, self.total) - self.base
        conditioning = inputs.render(m.landmarks[frames], m.body[frames])
        span = slice(start - self.base, stop - self.base)
        index = None if self.frame_index is None else self.frame_index[start:stop]
        picks = inputs.candidates(
            m.landmarks[span],
            m.rotation[span],
            m.translation[span],
            m.scale[span],
            index,
            self.exclusion,
            self.previous,
        )
        self.previous = picks[-1]
        self.done = stop
        maps = inputs.candidate_maps(m.landmarks[span], m.body[span], picks)
        pending = PendingInputs(start, conditioning, maps, picks, m.body[span], m.landmarks[span])
        self._forget()
        return pending

    def build(self, pending: PendingInputs) -> torch.Tensor:
        """(n, Cd, H, W) the dynamic inputs of prepared frames."""
        return self.inputs_of.dynamic(pending.conditioning, pending.maps, pending.picks)

    def inputs(self, stop: int, final: bool = False) -> torch.Tensor:
        """(stop - done, Cd, H, W) the dynamic inputs of frames [done, stop), stop <= ready(final)."""
        return self.build(self.prepare(stop, final))

    def _forget(self) -> None:
        keep_from = max(self.done - self.inputs_of.context, self.base)
        if self.motion is not None and keep_from - self.base > 64:
            self.motion = self.motion.take(slice(keep_from - self.base, None))
            self.base = keep_from
