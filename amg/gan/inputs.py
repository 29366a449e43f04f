"""The generator's input tensors, built by one code path for training (tracked motion) and inference (predicted
motion), so the network sees identical statistics in both.

Images enter as float in [-1, 1], channels first. Per generated frame t (see amg.gan.networks):

    dynamic  per candidate k (amg.gan.candidates): its RGB, conditioning and matte, warped onto frame t's
             landmarks (amg.conditioning.warp), CANDIDATE_CHANNELS each; then the conditioning of t-c..t+c
    static   the background plate
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from amg.conditioning import N_CHANNELS, render_sequence
from amg.conditioning.warp import TargetMesh, fixed_point, remap
from amg.core.tensors import planes_to_tensor, to_tensor
from amg.gan.candidates import CandidatePicker, head_pose_features
from amg.gan.references import AvatarReferences

# A warped candidate: RGB, its conditioning, its matte.
CANDIDATE_CHANNELS = 3 + N_CHANNELS + 1
# Candidates' pixels are resampled bicubically: bilinear resampling alone took a quarter of the detail of teeth
# and lip edges (obama_clip2's held-out mouths: Laplacian variance 128 warped bilinearly, 173 bicubically, 162
# real), which the generator's blend cannot give back. Their drawn conditioning and matte stay bilinear (and
# OpenCV's bicubic remap takes at most 4 channels).
CANDIDATE_INTERPOLATION = cv2.INTER_CUBIC


def with_context(start: int, stop: int, context: int, n_frames: int) -> np.ndarray:
    """Frame numbers start-context .. stop-1+context, clamped to the sequence (its ends are repeated)."""
    return np.clip(np.arange(start - context, stop + context), 0, n_frames - 1)


class GeneratorInputs:
    """Everything per avatar that inputs are made from: the candidate bank with its conditioning rendered once
    (its frames, and its conditioning | matte planes, ready to warp), the retrieval, and the static tensor."""

    def __init__(
        self,
        refs: AvatarReferences,
        context: int,
        n_candidates: int,
        hysteresis: float,
        device: torch.device | str = "cpu",
        mouth_hysteresis: float | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        self.refs = refs
        # Tensors in PyTorch's channels-last format (what reduced-precision kernels read; amg.core.precision).
        self.channels_last = channels_last
        # The dynamic tensor's number format: a reduced one where the generator computes in it (its first
        # convolution would cast a float32 input anyway; every level of uint8 survives bf16 and fp16).
        self.dtype = dtype
        self.context = context
        self.n_candidates = n_candidates
        self.size = refs.background.shape[0]
        self.device = torch.device(device)
        self.bank_conditioning = self.render(refs.landmarks, refs.body)
        self.picker = CandidatePicker(
            refs.landmarks, refs.poses, refs.index, n_candidates, hysteresis, mouth_hysteresis
        )
        self.background = to_tensor(refs.background, device)[None]
        self.static = self.background

    def use_format(self, channels_last: bool, dtype: torch.dtype) -> None:
        """Make the dynamic tensors in this memory format and number format from now on (the engine's)."""
        self.channels_last, self.dtype = channels_last, dtype

    @property
    def dynamic_channels(self) -> int:
        return CANDIDATE_CHANNELS * self.n_candidates + N_CHANNELS * (2 * self.context + 1)

    @property
    def static_channels(self) -> int:
        return self.static.shape[1]

    def render(self, landmarks: np.ndarray, body: np.ndarray) -> np.ndarray:
        """Conditioning images (T, H, W, C) uint8 at the generator's size."""
        return render_sequence(landmarks, body, self.size, self.refs.source_size)

    def candidates(
        self,
        landmarks: np.ndarray,
        rotation: np.ndarray,
        translation: np.ndarray,
        scale: np.ndarray,
        frame_index: np.ndarray | None = None,
        exclusion: int = 0,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bank entries (n, K) to warp for n consecutive frames with these landmarks and head poses (see
        CandidatePicker.pick)."""
        poses = head_pose_features(rotation, translation, scale)
        return self.picker.pick(landmarks, poses, frame_index, exclusion, previous)

    def candidate_maps(self, landmarks: np.ndarray, body: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """(n, K, H, W, 2) float32: the backward maps that warp each frame's candidates onto its landmarks."""
        refs = self.refs
        maps = np.empty((len(picks), picks.shape[1], self.size, self.size, 2), np.float32)
        for t, chosen in enumerate(picks):
            mesh = TargetMesh(landmarks[t], body[t], self.size, refs.source_size)
            mesh.maps(list(zip(refs.landmarks[chosen], refs.body[chosen])), out=maps[t])
        return maps

    def warped_planes(self, maps: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The candidates `picks` (n, K) resampled by `maps`, uint8: RGB (n, K, H, W, 3), conditioning (n, K, H,
        W, C), matte (n, K, H, W, 1). Each plane group is resampled into a contiguous buffer (4 channels at most:
        OpenCV's fast path); the one copy that joins them puts their channels where the tensor wants them."""
        size = (*picks.shape, self.size, self.size)
        rgb, conditioning = np.empty((*size, 3), np.uint8), np.empty((*size, N_CHANNELS), np.uint8)
        matte = np.empty(size, np.uint8)
        refs = self.refs
        for t, chosen in enumerate(picks):
            for k, float_map in enumerate(maps[t]):
                backward = fixed_point(float_map)  # converted once for its three images
                remap(refs.frames[chosen[k]], backward, CANDIDATE_INTERPOLATION, out=rgb[t, k])
                remap(self.bank_conditioning[chosen[k]], backward, out=conditioning[t, k])
                remap(refs.mattes[chosen[k]], backward, out=matte[t, k])
        return rgb, conditioning, matte[..., None]

    def dynamic(self, conditioning: np.ndarray, maps: np.ndarray, picks: np.ndarray) -> torch.Tensor:
        """conditioning (n + 2c, H, W, C) for n consecutive frames with their context; the candidates' maps
        (n, K, H, W, 2) and picks (n, K) of the n frames → (n, Cd, H, W)."""
        n = len(picks)
        window = range(2 * self.context + 1)
        rgb, cond, matte = self.warped_planes(maps, picks)
        k = range(picks.shape[1])
        if self.channels_last:  # every plane joined along the pixels' channels: the tensor's own layout
            joined = np.empty((n, self.size, self.size, self.dynamic_channels), np.uint8)
            for t in range(n):  # OpenCV's merge: 4x np.concatenate's speed over these thin planes (measured)
                planes = [plane[t, i] for i in k for plane in (rgb, cond, matte)]
                cv2.merge([*planes, *(conditioning[t + i] for i in window)], dst=joined[t])
            return to_tensor(joined, self.device, channels_last=True, dtype=self.dtype)
        context = [cv2.split(image) for image in conditioning]  # each frame's split once, used 2c + 1 times
        frames = [
            [single for i in k for plane in (rgb, cond, matte) for single in cv2.split(plane[t, i])]
            + [single for i in window for single in context[t + i]]
            for t in range(n)
        ]
        return planes_to_tensor(frames).to(self.device)
