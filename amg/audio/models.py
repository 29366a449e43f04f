"""The pretrained speech models that ship inside the openwakeword==0.5.1 wheel, run directly with onnxruntime.

Nothing is downloaded and openwakeword's own Python code is never imported (it pulls in scikit-learn and a
wake-word framework we do not need): only its three ONNX files are used.

- melspectrogram.onnx: 16 kHz audio in int16 units → 32 log-mel bands (60-3800 Hz, the band of Google's
  speech_embedding), 512-sample window, 10 ms hop, no centre padding; values in dB, clamped to 80 dB below
  the loudest frame of the call.
- embedding_model.onnx: Google's speech_embedding; 76 mel frames (775 ms) → 96 values.
- silero_vad.onnx: Silero VAD v4, an LSTM over 32 ms chunks at 8 or 16 kHz → speech probability per chunk.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.signal
from tqdm import tqdm

from amg.core.errors import AmgError
from amg.core.progress import report

SAMPLE_RATE = 16000
MEL_HOP = 160
MEL_WINDOW = 512
EMBEDDING_WINDOW = 76  # mel frames per embedding
EMBEDDING_DIM = 96
# Silero runs on audio decimated to 8 kHz, so that its decisions do not depend on whether the input had the
# 4-8 kHz band (phone audio does not): frame-wise agreement between wideband and phone-line versions of the
# same speech rises from r = 0.89 to 0.96 (benchmarks/audio_features.py), and it also separates better.
VAD_RATE = 8000
VAD_CHUNK = 256  # 32 ms; Silero v4 takes 256, 512 or 768 samples at 8 kHz: the shortest gives the finest timing

# The lip-sync stages share the CPU with decoding and rendering: two threads are most of the speed-up.
_THREADS = min(2, os.cpu_count() or 1)
# Windows per embedding-model call: large enough to amortise the call overhead, small enough to bound memory.
_EMBEDDING_BATCH = 256
# Below this many batches (~40 s of audio, a few seconds of work) a progress bar is only noise.
_PROGRESS_MIN_BATCHES = 4


def _model_path(filename: str) -> Path:
    spec = importlib.util.find_spec("openwakeword")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "resources" / "models" / filename
        if path.is_file():
            return path
    raise AmgError(f"Speech model {filename} not found: install the pinned openwakeword==0.5.1, whose wheel ships it.")


@functools.cache
def _session(filename: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = _THREADS
    options.inter_op_num_threads = 1
    # No busy-waiting between ops: in a live stream the generator's thread needs the other core meanwhile.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # onnxruntime warns about unused initialisers in these graphs
    return ort.InferenceSession(str(_model_path(filename)), sess_options=options, providers=["CPUExecutionProvider"])


def _log_mel_for_embedding(audio_int16_units: np.ndarray) -> np.ndarray:
    """(frames, 32) log-mel of openwakeword's model, rescaled as openwakeword does before the embedding model.

    The `/10 + 2` maps the ONNX model's dB output onto the scale of the TensorFlow front end that Google's
    embedding was trained with (openwakeword.utils.AudioFeatures._get_melspectrogram).
    """
    spec = _session("melspectrogram.onnx").run(None, {"input": audio_int16_units[None].astype(np.float32)})[0]
    return spec[0, 0] / 10.0 + 2.0


def embedding_reach(frame_hop: int) -> tuple[int, int]:
    """Samples an embedding window reaches before its video frame starts, and after (see speech_embedding)."""
    # Mel frame j of the padded audio is centred on padded sample j*MEL_HOP + MEL_WINDOW/2; a window of
    # EMBEDDING_WINDOW frames starting at j0 is centred half a window further, on the middle of its video frame.
    window_centre = MEL_WINDOW // 2 + MEL_HOP * (EMBEDDING_WINDOW - 1) // 2
    before = window_centre - frame_hop // 2
    return before, (EMBEDDING_WINDOW - 1) * MEL_HOP + MEL_WINDOW - before


def speech_embedding(samples: np.ndarray, n_frames: int, frame_hop: int, gain: float = 1.0) -> np.ndarray:
    """(n_frames, 96) speech embeddings, one per video frame, each window centred on its frame.

    Frame i covers samples [i*frame_hop, (i+1)*frame_hop); `frame_hop` must be a multiple of the 10 ms mel hop.
    The audio is zero-padded at both ends so that edge frames get full windows. `gain` scales the audio first
    (the model is not level-invariant, so the caller brings speech to a reference level).
    """
    step = frame_hop // MEL_HOP
    if step * MEL_HOP != frame_hop:
        raise ValueError(f"frame hop {frame_hop} is not a multiple of the mel hop {MEL_HOP}")
    # Padded so that the window starting at mel frame i*step is centred on the middle of video frame i.
    left_pad = embedding_reach(frame_hop)[0]
    n_mel = (n_frames - 1) * step + EMBEDDING_WINDOW
    padded = np.zeros((n_mel - 1) * MEL_HOP + MEL_WINDOW, np.float32)
    used = samples[: len(padded) - left_pad]
    padded[left_pad : left_pad + len(used)] = used * np.float32(gain * 32767.0)
    mel = _log_mel_for_embedding(padded)
    starts = np.arange(n_frames) * step
    embedding = np.empty((n_frames, EMBEDDING_DIM), np.float32)
    batches = range(0, n_frames, _EMBEDDING_BATCH)
    for b in tqdm(
        batches, desc="Speech embedding", unit="batch", leave=False, disable=len(batches) < _PROGRESS_MIN_BATCHES
    ):
        batch_starts = starts[b : b + _EMBEDDING_BATCH]
        windows = mel[batch_starts[:, None] + np.arange(EMBEDDING_WINDOW)][..., None]
        out = _session("embedding_model.onnx").run(None, {"input_1": windows})[0]
        embedding[b : b + len(batch_starts)] = out.reshape(len(batch_starts), EMBEDDING_DIM)
        report("audio.embedding", b // _EMBEDDING_BATCH + 1, len(batches))
    return embedding


class SpeechDetector:
    """Silero over 32 ms chunks of 8 kHz audio, in order: the LSTM state carries context from chunk to chunk (a
    live stream feeds chunks as they come, a file all at once; both get the same probabilities)."""

    def __init__(self):
        self.session = _session("silero_vad.onnx")
        self.h = np.zeros((2, 1, 64), np.float32)
        self.c = np.zeros((2, 1, 64), np.float32)
        self.rate = np.array(VAD_RATE, np.int64)

    def __call__(self, chunks: np.ndarray, progress: bool = False) -> np.ndarray:
        """(n, VAD_CHUNK) 8 kHz chunks → (n,) speech probabilities."""
        prob = np.empty(len(chunks), np.float32)
        for k, chunk in enumerate(chunks):
            out, self.h, self.c = self.session.run(
                None, {"input": chunk[None], "sr": self.rate, "h": self.h, "c": self.c}
            )
            prob[k] = out[0, 0]
            if progress:
                report("audio.vad", k + 1, len(chunks))
        return prob


def narrowband(samples: np.ndarray) -> np.ndarray:
    """16 kHz → the 8 kHz Silero reads (see VAD_RATE)."""
    return scipy.signal.resample_poly(samples, 1, SAMPLE_RATE // VAD_RATE).astype(np.float32)


def vad_chunk_centres(n_chunks: int, first: int = 0) -> np.ndarray:
    """The centres of VAD chunks `first`, ... in 16 kHz samples."""
    return (np.arange(first, first + n_chunks) * VAD_CHUNK + VAD_CHUNK / 2) * (SAMPLE_RATE // VAD_RATE)


def speech_probability(samples: np.ndarray, n_frames: int, frame_hop: int) -> np.ndarray:
    """(n_frames,) Silero speech probability at the middle of each video frame (linear between its chunks)."""
    narrow = narrowband(samples[: n_frames * frame_hop])
    n_chunks = max(1, -(-len(narrow) // VAD_CHUNK))
    chunks = np.zeros(n_chunks * VAD_CHUNK, np.float32)
    chunks[: len(narrow)] = narrow
    prob = SpeechDetector()(chunks.reshape(n_chunks, VAD_CHUNK), progress=True)
    frame_centres = np.arange(n_frames) * frame_hop + frame_hop / 2
    # Frames past the end of the audio are silence, not a copy of the last chunk's probability.
    return np.interp(frame_centres, vad_chunk_centres(n_chunks), prob, right=0.0).astype(np.float32)
