"""The generator's input tensors, built by one code path for training (tracked motion) and inference (predicted
motion), so the network sees identical statistics in both.

Images enter as float in [-1, 1], channels first. Per generated frame t (see amg.gan.networks):

    dynamic  conditioning of t-c..t+c | nearest-pose bank frame RGB | that bank frame's conditioning
    static   background plate | each fixed reference's RGB and conditioning
"""

from __future__ import annotations

import numpy as np
import torch

from amg.gan.references import AvatarReferences, pose_features
from amg.render import N_CHANNELS, render_sequence


def channels_first(images: np.ndarray) -> np.ndarray:
    """(..., H, W, C) → contiguous (..., C, H, W), still uint8 (a quarter of the bytes of float)."""
    return np.ascontiguousarray(np.moveaxis(images, -1, -3))


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu", layout_first: bool = False) -> torch.Tensor:
    """(..., H, W, C) uint8 (or (..., C, H, W) with `layout_first`) → (..., C, H, W) float in [-1, 1].

    Building the inputs is memory-bound (23 channels per 256² frame): channels are moved while the pixels are
    still uint8, and the float conversion runs on contiguous memory (on a strided view it is many times slower).
    """
    planar = images if layout_first else channels_first(images)
    return torch.from_numpy(planar).to(device).float().mul_(1 / 127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [-1, 1] → (..., H, W, C) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def with_context(start: int, stop: int, context: int, n_frames: int) -> np.ndarray:
    """Frame numbers start-context .. stop-1+context, clamped to the sequence (its ends are repeated)."""
    return np.clip(np.arange(start - context, stop + context), 0, n_frames - 1)


class GeneratorInputs:
    """Everything per avatar that inputs are made from: the references, rendered once, and the static tensor."""

    def __init__(self, refs: AvatarReferences, context: int, device: torch.device | str = "cpu"):
        self.refs = refs
        self.context = context
        self.size = refs.background.shape[0]
        self.device = torch.device(device)
        self.bank_conditioning = self.render(refs.bank_landmarks, refs.bank_body)
        ref_conditioning = self.render(refs.ref_landmarks, refs.ref_body)
        self.background = to_tensor(refs.background, device)[None]
        references = torch.cat([to_tensor(refs.ref_frames, device), to_tensor(ref_conditioning, device)], dim=1)
        self.static = torch.cat([self.background, references.reshape(1, -1, self.size, self.size)], dim=1)

    @property
    def dynamic_channels(self) -> int:
        return N_CHANNELS * (2 * self.context + 1) + 3 + N_CHANNELS

    @property
    def static_channels(self) -> int:
        return self.static.shape[1]

    def render(self, landmarks: np.ndarray, body: np.ndarray) -> np.ndarray:
        """Conditioning images (T, H, W, C) uint8 at the generator's size."""
        return render_sequence(landmarks, body, self.size, self.refs.source_size)

    def nearest_bank(self, rotation, translation, scale, frame_index=None, exclusion: int = 0) -> np.ndarray:
        return self.refs.nearest_pose(pose_features(rotation, translation, scale), frame_index, exclusion)

    def dynamic(self, conditioning: np.ndarray, bank: np.ndarray) -> torch.Tensor:
        """conditioning (n + 2c, H, W, C) for n consecutive frames with their context, bank (n,) → (n, Cd, H, W)."""
        n = len(bank)
        cond = channels_first(conditioning)  # each frame's conditioning moved once, used 2c + 1 times
        window = [cond[i : i + n] for i in range(2 * self.context + 1)]
        parts = window + [channels_first(self.refs.bank_frames[bank]), channels_first(self.bank_conditioning[bank])]
        return to_tensor(np.concatenate(parts, axis=1), self.device, layout_first=True)
