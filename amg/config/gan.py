"""Stages 4-5's options: the image generator over warped candidate frames, its discriminators and schedule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from amg.config.limits import LOSS_WEIGHT, RATE
from amg.core.errors import AmgError

# The smallest image the PatchGAN discriminator judges (its three stride-2 and two 4x4 layers need 24 px), at
# its coarsest scale.
MIN_DISCRIMINATED_SIZE = 24


@dataclass
class GanConfig:
    """Stage 5 (amg.gan): the avatar's own frames warped onto the target landmarks, blended and refined.

    The defaults are the `realtime` generator at 256 px: about 1.2 GFLOP per frame, so rendering keeps up with
    25 fps on 2 CPU cores. Presets (PRESETS below) change the size, width and schedule.
    """

    # Read from older saved configs and checkpoints, and ignored: the holdout is AvatarConfig.holdout now.
    RETIRED: ClassVar[tuple[str, ...]] = ("holdout",)
    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr_g", "lr_d", "eval_every", "save_every", "eval_frames")
    # Bounds narrower than the one range rule (amg.core.dataclass_io): what the networks work with.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "size": (0, 2048),
        "ngf": (1, 512),
        "max_channels": (1, 4096),
        "n_levels": (1, 8),
        "context": (0, 8),
        "n_candidates": (1, 4),  # the candidate slots (amg.gan.candidates.SLOTS)
        "detail_sharpness": (1.0, 1000.0),
        "bank_size": (1, 100_000),
        "ndf": (1, 512),
        "n_scales": (1, 4),
        "clip_frames": (1, 16),
        "batch_clips": (1, 256),
        "lr_g": RATE,
        "lr_d": RATE,
        "weight_decay": RATE,
        **dict.fromkeys(
            (
                "l1_weight",
                "mouth_weight",
                "alpha_weight",
                "gan_weight",
                "feature_matching_weight",
                "temporal_weight",
                "perceptual_weight",
                "perceptual_full_weight",
                "mouth_gan_weight",
            ),
            LOSS_WEIGHT,
        ),
        "mouth_crop": (32, 512),  # the perceptual network's first layers need 32 px
        "mouth_gan_max_size": (0, 8192),
        "ema_decay": (0.0, 1.0),
        "eval_frames": (1, 1000),
    }

    # Generated crop side; the preprocessed crop is resized to it. 0: the preprocessed crop's own side (for an HD
    # source, its face at the source's pixel density: amg.tracking.scan.crop_size), resolved by for_crop.
    size: int = 0
    ngf: int = 16  # generator width at the first (half-resolution) level
    max_channels: int = 128
    n_levels: int = 6  # stride-2 levels of the U-Net: 256 → 4 px at the bottleneck
    context: int = 1  # conditioning of frames t-context .. t+context (temporal context, smooths motion)
    # Real training frames warped onto each generated frame's landmarks and blended (amg.gan.candidates):
    # 1 = nearest head pose, 2 = + nearest mouth shape (teeth), 3 = + nearest eye state (blinks), 4 = + a
    # second pose candidate from another moment (8 more input channels and one more warp per frame). Default
    # preset on obama_clip2, 4 candidates resampled bicubically against 3 bilinearly: held-out PSNR 27.65 dB
    # against 27.48, mouth sharpness 0.81x the real frames' against 0.70x (`amg eval`).
    n_candidates: int = 4
    # A candidate is kept while it costs (squared distance) at most (1 + this) times the best, so texture
    # switches rarely. On obama_clip2's held-out tail 1 switched the pose slot 13 times in 113 frames instead
    # of 41 (at 0) and cut its warp's face flicker from 4.77 to 4.21 (real 3.93), PSNR 26.05 dB against 25.93.
    candidate_hysteresis: float = 1.0
    # The mouth slot's own: a speaking mouth changes shape every few frames, and a mouth candidate kept until one
    # twice as close turns up shows closed lips where the target parts them (fewer teeth). 0.25 switches it
    # sooner, at a little more texture flicker in the mouth (benchmarks/RESULTS.md, "The mouth slot's hysteresis").
    mouth_hysteresis: float = 0.25
    # The candidates' finest texture is blended with weights this many times sharper than their coarse picture
    # (amg.gan.networks): a soft blend of misaligned candidates averages pores, lashes and teeth away. Held out,
    # an avatar trained without it (1) and rendered with 32: face-box sharpness 0.81 -> 1.07x the real frames'
    # (obama_clip2, 256 px) and 0.70 -> 0.95x (obama_halfbody_34s, 512 px), LPIPS equal or better.
    detail_sharpness: float = 32.0
    # Training frames the candidates come from (all of them up to this many; beyond, spread + extremes).
    bank_size: int = 640
    # A training frame's candidates are never closer in time than this (else it copies the answer).
    reference_exclusion: int = 25
    ndf: int = 16  # discriminator width: at 32 the discriminators cost 3.5x the generator per step on CPU
    n_scales: int = 2  # multi-scale PatchGAN
    clip_frames: int = 3  # frames per clip seen by the temporal (3-D) discriminator
    # Starting from the warp, the default generator's held-out scores are flat after a few hundred steps
    # (obama_clip2: PSNR 26.05 dB at step 250, 26.02 at 500 and 750), so a CPU stops at 1000.
    steps: int = 1000
    batch_clips: int = 2  # clips per step (each clip_frames frames)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    weight_decay: float = 1e-4
    l1_weight: float = 10.0
    mouth_weight: float = 4.0  # extra L1 weight inside the mouth box (from the lip landmarks)
    alpha_weight: float = 1.0  # generated matte vs the tracked person matte
    gan_weight: float = 1.0
    feature_matching_weight: float = 5.0
    temporal_weight: float = 0.5
    # Shift-tolerant LPIPS (AlexNet, from the stlpips-pytorch wheel) on the mouth crop: what makes teeth and lip
    # edges crisp. It costs 1.9 GFLOP per 80² pair, so it is affordable on CPU; on the whole 256² frame
    # it costs 19.5 GFLOP per pair (13x the generator), so that term is for GPUs (the quality preset).
    # 0 turns a term off; both are skipped, with a warning, when the wheel is not installed.
    perceptual_weight: float = 1.0
    perceptual_full_weight: float = 0.0
    # A PatchGAN of its own on the mouth crop's fine detail (amg.gan.losses.mouth_detail_crops): the frame
    # discriminators never tell generated frames from real ones within the default steps, so nothing asked for a
    # crisp mouth. Its adversarial and feature-matching terms weigh this many times the frame discriminator's (0:
    # none). Held out, default preset: mouth sharpness 0.75 -> 0.90x the real frames' (kristi_noem), 0.77 ->
    # 0.92x (andrew_ng_clip1), 1.03 -> 1.08x (obama_clip2), for 0.10-0.28 dB of the face box's PSNR
    # (benchmarks/RESULTS.md, "The mouth discriminator").
    mouth_gan_weight: float = 1.0
    # ... for generators up to this size only. At 512 px the mouth box (about 160 px) reaches it halved to the
    # crop, and on cnn_anchor_71s, the same seed and motion with and without it: face box 24.46 against 24.81 dB,
    # teeth 0.40 against 0.53x and mean opening 0.96 against 1.06x the real frames', sharpness 0.99 against 0.94x
    # (benchmarks/RESULTS.md, "The mouth discriminator at 512 px").
    mouth_gan_max_size: int = 256
    mouth_crop: int = 80  # side the mouth box (about 80 px at 256, 40 at 128) is resampled to for that loss
    ema_decay: float = 0.999
    eval_frames: int = 24
    eval_every: int = 250  # held-out metrics and a sample grid (conditioning | generated | real)
    save_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.size:
            return
        # The U-Net halves the image n_levels times and concatenates each level with the one it came from.
        if self.size % 2**self.n_levels:
            raise AmgError(
                f"Config gan.size: {self.size} px cannot be halved {self.n_levels} times (gan.n_levels): use a "
                f"multiple of {2**self.n_levels}."
            )
        coarsest = self.size / 2 ** (self.n_scales - 1)
        if coarsest < MIN_DISCRIMINATED_SIZE:
            raise AmgError(
                f"Config gan.n_scales: {self.n_scales} scales of a {self.size}-px image end at {coarsest:g} px, "
                f"below the {MIN_DISCRIMINATED_SIZE} px the discriminator needs: use fewer scales or a larger size."
            )

    def for_crop(self, crop_size: int) -> GanConfig:
        """This config for an avatar preprocessed at `crop_size`: a size of 0 becomes that side (in the multiples
        the U-Net can halve), any other size stays."""
        if self.size:
            return self
        step = 2**self.n_levels
        return replace(self, size=max(step, crop_size // step * step))
