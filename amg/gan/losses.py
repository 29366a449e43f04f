"""The image GAN's losses: mouth-weighted L1, least-squares adversarial terms, feature matching, mouth crops and
their fine detail."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def mouth_weight_map(boxes: np.ndarray, size: int, extra: float) -> torch.Tensor:
    """(B, 1, size, size) per-pixel L1 weights: 1 everywhere, 1 + extra inside each mouth box."""
    weights = torch.ones(len(boxes), 1, size, size)
    for w, (x0, y0, x1, y1) in zip(weights, boxes):
        w[:, y0:y1, x0:x1] += extra
    return weights


def weighted_l1(fake: torch.Tensor, real: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The mean over images of each image's weighted mean absolute error. Normalised per image, not by the
    batch's total weight: a mean over images is the same whether one process has the whole batch or each rank
    of a data-parallel run a share of it (amg.core.distributed)."""
    per_image = ((fake - real).abs() * weights).sum(dim=(1, 2, 3)) / (weights.sum(dim=(1, 2, 3)) * fake.shape[1])
    return per_image.mean()


def crop_resized(images: torch.Tensor, boxes: np.ndarray, side: int) -> torch.Tensor:
    """Cut each image's box and resample it to side x side (bilinear): the mouth, seen at 2x for the losses."""
    crops = [
        F.interpolate(img[None, :, y0:y1, x0:x1], size=(side, side), mode="bilinear", align_corners=False)
        for img, (x0, y0, x1, y1) in zip(images, boxes)
    ]
    return torch.cat(crops)


def fine_detail(images: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """`images` less their 3x3 local mean, times `gain`: the band where a soft mouth and a crisp one differ."""
    return gain * (images - F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False))


def mouth_detail_crops(inputs: torch.Tensor, boxes: np.ndarray, side: int, n_conditioning: int) -> torch.Tensor:
    """The mouth discriminator's input: each (conditioning, picture) image's mouth box at side x side, its picture
    reduced to fine detail. Shown whole pictures, its loss stayed at chance through the default 1000 steps;
    shown their finest band, where a soft mouth and a crisp one differ, it fell below (0.48 by the end)."""
    crops = crop_resized(inputs, boxes, side)
    return torch.cat([crops[:, :n_conditioning], fine_detail(crops[:, n_conditioning:])], dim=1)


def lsgan_loss(logits: torch.Tensor, target_real: bool) -> torch.Tensor:
    """Least-squares GAN (Mao et al.): steadier gradients than the log loss for small patch discriminators."""
    return ((logits.float() - (1.0 if target_real else 0.0)) ** 2).mean()  # fp32 under autocast too


def discriminator_loss(real_outputs: list[list[torch.Tensor]], fake_outputs: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales; each scale's last feature map is its patch logits."""
    return sum(lsgan_loss(r[-1], True) + lsgan_loss(f[-1], False) for r, f in zip(real_outputs, fake_outputs))


def generator_adversarial_loss(fake_outputs: list[list[torch.Tensor]]) -> torch.Tensor:
    return sum(lsgan_loss(f[-1], True) for f in fake_outputs)


def feature_matching_loss(
    real_outputs: list[list[torch.Tensor]], fake_outputs: list[list[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminators' intermediate features of real and generated frames (pix2pixHD)."""
    terms = [
        F.l1_loss(f.float(), r.detach().float())  # fp32 under autocast too
        for real, fake in zip(real_outputs, fake_outputs)
        for r, f in zip(real[:-1], fake[:-1])
    ]
    return sum(terms) / len(terms)
