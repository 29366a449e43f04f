"""Training data of the image GAN: the preprocessed avatar video at the generator's size, and clip batches."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from amg.core.concurrency import prefetch
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.core.tensors import to_tensor
from amg.gan.inputs import GeneratorInputs, with_context
from amg.gan.references import AvatarReferences, build_references
from amg.media import probe_video, resized_frames
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks


@dataclass
class GanData:
    tracks: Tracks
    frames: np.ndarray  # (T, H, W, 3) uint8 at the generator's size
    mattes: np.ndarray  # (T, H, W) uint8 person matte
    train: slice
    val: slice

    @property
    def size(self) -> int:
        return self.frames.shape[1]


@dataclass
class ClipBatch:
    """B clips of L consecutive frames, flattened to B*L frames (clip-major) for the generator."""

    frame_index: np.ndarray  # (B*L,)
    dynamic: torch.Tensor  # (B*L, Cd, H, W)
    conditioning: torch.Tensor  # (B*L, C, H, W) of the frames themselves (the discriminators' condition)
    real: torch.Tensor  # (B*L, 3, H, W)
    matte: torch.Tensor  # (B*L, 1, H, W) in [0, 1]
    mouth: np.ndarray  # (B*L, 4) mouth boxes


def _decode_resized(path, size: int, desc: str) -> np.ndarray:
    n = probe_video(path).n_frames()
    return np.stack(list(tqdm(prefetch(resized_frames(path, size)), total=n, desc=desc, unit="frame", leave=False)))


def load_gan_data(layout: Layout, name: str, size: int, holdout: float) -> GanData:
    """Decode the avatar's cropped frames and mattes once, at the generator's size (the training set in memory)."""
    tracks = Tracks.load(layout.tracks(name))
    if size > tracks.size:
        raise AmgError(
            f"The generator size {size} is larger than the preprocessed crop ({tracks.size} px) of {name!r}: "
            f"preprocess with --size {size} or lower the generator size."
        )
    frames = _decode_resized(layout.frames_video(name), size, "Loading frames")
    mattes = _decode_resized(layout.matte_video(name), size, "Loading mattes")[..., 0]
    n = min(len(frames), len(mattes), tracks.n_frames)
    train, val = held_out_split(n, holdout)
    if train.stop < 25:
        raise AmgError(f"Video {name!r} has only {n} frames: too short to train the image generator.")
    return GanData(tracks, frames[:n], mattes[:n], train, val)


def make_references(data: GanData, layout: Layout, name: str, bank_size: int) -> AvatarReferences:
    background = cv2.cvtColor(cv2.imread(str(layout.background(name))), cv2.COLOR_BGR2RGB)
    return build_references(data.tracks, data.frames, data.mattes, background, data.train, bank_size)


def clip_batch(
    data: GanData, inputs: GeneratorInputs, starts: np.ndarray, clip_frames: int, exclusion: int
) -> ClipBatch:
    """The generator inputs and targets of clips starting at `starts`, on the inputs' device. Each clip picks
    its candidates as a render does (steady over the clip), never within `exclusion` frames of its own."""
    t, c, dev, channels_last = data.tracks, inputs.context, inputs.device, inputs.channels_last
    dynamic, conditioning = [], []
    for start in starts:
        frames = with_context(start, start + clip_frames, c, t.n_frames)
        cond = inputs.render(t.landmarks[frames], t.body[frames])
        index = np.arange(start, start + clip_frames)
        picks = inputs.candidates(
            t.landmarks[index], t.rotation[index], t.translation[index], t.scale[index], index, exclusion
        )
        dynamic.append(inputs.dynamic(cond, inputs.candidate_maps(t.landmarks[index], t.body[index], picks), picks))
        conditioning.append(to_tensor(cond[c : c + clip_frames], dev, channels_last=channels_last))
    index = (starts[:, None] + np.arange(clip_frames)).reshape(-1)
    return ClipBatch(
        frame_index=index,
        dynamic=torch.cat(dynamic),
        conditioning=torch.cat(conditioning),
        real=to_tensor(data.frames[index], dev, channels_last=channels_last),
        matte=torch.from_numpy(data.mattes[index]).to(dev).float().div_(255)[:, None],
        mouth=mouth_boxes(t.landmarks[index], t.size, data.size),
    )
