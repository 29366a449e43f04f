"""Stage 6's options: the face refiner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from amg.config.limits import FRACTION, LOSS_WEIGHT, RATE
from amg.core.dataclass_io import MAX_INT


@dataclass
class EnhanceConfig:
    """Stage 6, the face refiner (amg.enhance): the avatar's own face, learned at `scale` x the size it has in
    the generator's output, replacing GFPGAN (whose weights cannot be had offline and which drifts from the
    person's identity)."""

    # Schedule fields: changing one resumes or extends training from the checkpoint; any other field changes what
    # the weights are, and the model is trained again from scratch.
    SCHEDULE: ClassVar[tuple[str, ...]] = ("steps", "lr_g", "lr_d", "eval_every", "save_every")
    # Bounds narrower than the one range rule (amg.core.dataclass_io): what the refiner works with.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "scale": (1.0, 4.0),
        "margin": FRACTION,
        "ngf": (1, 256),
        "n_blocks": (0, 32),
        "ndf": (1, 512),
        "batch_size": (1, 256),
        "lr_g": RATE,
        "lr_d": RATE,
        **dict.fromkeys(("l1_weight", "mouth_weight", "gan_weight", "feature_matching_weight"), LOSS_WEIGHT),
        "feather": (0.0, 0.5),  # of the crop's side, from each edge
        "max_frames": (1, MAX_INT),
    }

    scale: float = 2.0  # refined face crop side / its side in the generator's output
    margin: float = 0.12  # crop box around the face oval, per side, as a fraction of the face's extent
    smooth_window: int = 9  # frames the crop box centre is smoothed over (a steady box: no breathing, no shake)
    ngf: int = 16  # refiner width at full resolution (doubling at each of its 2 stride-2 levels)
    n_blocks: int = 2  # residual blocks at a quarter of the crop's resolution
    ndf: int = 16  # as the generator's discriminators: wider ones cost more than the refiner on CPU
    # At 256 px a face crop is about 370² at 2x: a step of 2 crops takes about 1.5 s on 2 CPU cores.
    steps: int = 1000
    batch_size: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    l1_weight: float = 10.0
    mouth_weight: float = 4.0  # extra L1 weight in the mouth box: teeth and lips are what the refiner is for
    gan_weight: float = 1.0
    feature_matching_weight: float = 5.0
    feather: float = 0.15  # blend ramp at the crop's border, as a fraction of its side
    max_frames: int = 1500  # training frames the pairs are made of (the generator runs once over them)
    reference_exclusion: int = 25  # as GanConfig's: the generator's pose reference is never the frame itself
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0
