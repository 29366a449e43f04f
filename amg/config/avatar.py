"""What `--config` and `--set` reach after preprocessing: one avatar's trained stages and how it renders."""

from __future__ import annotations

from dataclasses import dataclass, field

from amg.config.enhance import EnhanceConfig
from amg.config.gan import GanConfig
from amg.config.motion import MotionConfig
from amg.config.render import RenderConfig
from amg.core.checkpoints import TrainingRun
from amg.core.errors import AmgError
from amg.core.precision import Precision


@dataclass
class AvatarConfig:
    """What `--config` and `--set` reach after preprocessing: the trained stages (motion models, image GAN,
    face refiner) and how videos are rendered (`render.*`, not part of any checkpoint)."""

    # The video's tail no stage trains on (the held-out frames of every report and of `amg eval`).
    holdout: float = 0.15
    # The number format training and rendering compute in: auto, fp32, bf16 or fp16 (amg.core.precision). Not a
    # model field: a checkpoint trained in one precision continues or renders in any other.
    precision: Precision = "auto"
    motion: MotionConfig = field(default_factory=MotionConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.holdout < 1:
            raise AmgError(f"Config holdout: a fraction of the video from 0 up to 1 (exclusive), got {self.holdout:g}.")

    def training_run(self) -> TrainingRun:
        """What every stage's training is told besides its own section: the holdout and the precision."""
        return TrainingRun(self.holdout, self.precision)
