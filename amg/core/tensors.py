"""uint8 images ↔ the networks' float tensors in [-1, 1] (the image GAN and the face refiner read and write the
same way)."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch


def channels_first(images: np.ndarray) -> np.ndarray:
    """(..., H, W, C) → contiguous (..., C, H, W), still uint8 (a quarter of the bytes of float)."""
    return np.ascontiguousarray(np.moveaxis(images, -1, -3))


def to_tensor(
    images: np.ndarray,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(..., H, W, C) uint8 → (..., C, H, W) in [-1, 1] as `dtype`
    (float32, or a 16-bit float: bf16, fp16); with `channels_last` (and (B, H, W, C) input) in PyTorch's
    channels-last memory format, which is the numpy array's own layout: no copy but the conversion.

    Building the inputs is memory-bound (36 channels per 256² frame): channels are moved while the pixels are
    still uint8, and the conversion runs on contiguous memory (on a strided view it is many times slower).
    """
    if channels_last and images.ndim == 4:
        if torch.device(device).type != "cpu":  # uint8 crosses to the device, which converts it
            nhwc = torch.from_numpy(np.ascontiguousarray(images)).to(device)
            return nhwc.permute(0, 3, 1, 2).float().mul_(1 / 127.5).sub_(1.0).to(dtype)  # NHWC strides kept
        # On a CPU, one pass frame by frame over the NHWC array, which is the channels-last tensor's own memory.
        if dtype == torch.float32:
            # x / 127.5 - 1 (OpenCV's addWeighted: 1.6x PyTorch's three passes at 512 px, measured; it may round
            # the last bit differently).
            nhwc = np.empty(images.shape, np.float32)
            for image, out in zip(images, nhwc):
                rows = image.reshape(-1, image.shape[-1])
                cv2.addWeighted(rows, 1 / 127.5, rows, 0.0, -1.0, dst=out.reshape(rows.shape), dtype=cv2.CV_32F)
            return torch.from_numpy(nhwc).permute(0, 3, 1, 2)
        # A 16-bit float: each of the 256 levels looked up (OpenCV's LUT), half the bytes of float32 written and
        # the network's own cast of its input skipped.
        bits = np.empty(images.shape, np.uint16)
        table = _level_bits(dtype)
        for image, out in zip(images, bits):
            rows = image.reshape(-1, image.shape[-1])
            cv2.LUT(rows, table, dst=out.reshape(rows.shape))
        return torch.from_numpy(bits.view(np.int16)).view(dtype).permute(0, 3, 1, 2)
    return torch.from_numpy(channels_first(images)).to(device).float().mul_(1 / 127.5).sub_(1.0).to(dtype)


def planes_to_tensor(frames: list[list[np.ndarray]]) -> torch.Tensor:
    """Frames given as equal lists of (H, W) uint8 planes → (B, C, H, W) float32 in [-1, 1], the same numbers as
    to_tensor. Each plane is looked up (OpenCV's LUT over the 256 levels) straight into its place in the
    channels-first tensor: one pass over the float memory, where a channels-first uint8 copy and three float
    passes took four times as long at 512 px (benchmarks/RESULTS.md)."""
    out = np.empty((len(frames), len(frames[0]), *frames[0][0].shape), np.float32)
    table = _level_values()
    for planes, frame in zip(frames, out):
        for plane, channel in zip(planes, frame):
            cv2.LUT(plane, table, dst=channel)
    return torch.from_numpy(out)


@functools.cache
def _level_values() -> np.ndarray:
    """(256,) float32: each uint8 level as to_tensor's channels-first path computes it."""
    return to_tensor(np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1))[0, 0, 0].numpy()


@functools.cache
def _level_bits(dtype: torch.dtype) -> np.ndarray:
    """(256,) uint16: the bit patterns of each uint8 level's float32 value (to_tensor's) in the 16-bit float
    `dtype`, rounded as a cast rounds it: the same numbers as converting to float32 first."""
    levels = to_tensor(np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1), channels_last=True)
    return levels.reshape(256).to(dtype).view(torch.int16).numpy().view(np.uint16)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [-1, 1] → (..., H, W, C) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()
