"""The trained stages of an avatar, in order, all of one shape: what `amg run`, `amg train`, `amg eval` and the
service iterate. Adding a stage touches this list and its own package, nothing else.

Each stage answers the same questions: its name (also its AvatarConfig section and its progress key), the files
it writes, whether it can be used (`is_trained`: a finished model, whatever config made it), whether a config
leaves anything to train (`is_done`: schedule changes extend, model changes start again; see
amg.config.model_fields), how to train it (resuming, extending or, with `force`, from scratch), and which frames
it holds out. Stage modules are imported when a stage is used: they load torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from amg.config import AvatarConfig, EnhanceConfig, GanConfig, MotionConfig, read_saved_config
from amg.core.checkpoints import TrainingRun
from amg.core.layout import Layout

log = logging.getLogger(__name__)


class Stage(Protocol):
    name: str  # also the AvatarConfig section it is configured by, and its progress key
    required: bool  # every render needs it (the face refiner runs only with --enhance)
    config_type: type  # its AvatarConfig section's class

    def config_path(self, layout: Layout, avatar: str) -> Path: ...

    def artifacts(self, layout: Layout, avatar: str) -> tuple[Path, ...]: ...

    def is_trained(self, layout: Layout, avatar: str) -> bool: ...

    def is_done(self, layout: Layout, avatar: str, cfg: Any, run: TrainingRun) -> bool: ...

    def train(
        self,
        layout: Layout,
        avatar: str,
        cfg: Any,
        run: TrainingRun,
        force: bool = False,
        max_minutes: float | None = None,
    ) -> dict: ...


@dataclass(frozen=True)
class MotionStage:
    """Stage 3: Audio→Expression, Audio→Head pose, head→body, the eye model (amg.motion)."""

    name: str = "motion"
    required: bool = True
    config_type: type = MotionConfig

    def config_path(self, layout: Layout, avatar: str) -> Path:
        return layout.motion_config(avatar)

    def artifacts(self, layout: Layout, avatar: str) -> tuple[Path, ...]:
        return (*layout.motion_models(avatar).values(), self.config_path(layout, avatar))

    def is_trained(self, layout: Layout, avatar: str) -> bool:
        from amg.motion.inference import motion_trained

        return motion_trained(layout, avatar)

    def is_done(self, layout: Layout, avatar: str, cfg: MotionConfig, run: TrainingRun) -> bool:
        from amg.motion.train import stale_motion_models

        return not stale_motion_models(layout, avatar, cfg, run.holdout)

    def train(
        self,
        layout: Layout,
        avatar: str,
        cfg: MotionConfig,
        run: TrainingRun,
        force: bool = False,
        max_minutes: float | None = None,
    ) -> dict:
        from amg.motion.train import train_motion

        return train_motion(layout, avatar, cfg, run, force=force)  # minutes on a CPU: no time budget needed


@dataclass(frozen=True)
class GanStage:
    """Stages 4–5: the image GAN over warped candidate frames (amg.gan)."""

    name: str = "gan"
    required: bool = True
    config_type: type = GanConfig

    def config_path(self, layout: Layout, avatar: str) -> Path:
        return layout.gan_config(avatar)

    def artifacts(self, layout: Layout, avatar: str) -> tuple[Path, ...]:
        return layout.gan_checkpoint(avatar), layout.gan_references(avatar), self.config_path(layout, avatar)

    def is_trained(self, layout: Layout, avatar: str) -> bool:
        from amg.gan.train import gan_trained

        return gan_trained(layout, avatar)

    def is_done(self, layout: Layout, avatar: str, cfg: GanConfig, run: TrainingRun) -> bool:
        from amg.gan.train import gan_done

        return gan_done(layout, avatar, cfg, run.holdout)

    def train(
        self,
        layout: Layout,
        avatar: str,
        cfg: GanConfig,
        run: TrainingRun,
        force: bool = False,
        max_minutes: float | None = None,
    ) -> dict:
        from amg.gan.train import train_gan

        if force:
            layout.gan_checkpoint(avatar).unlink(missing_ok=True)
        return train_gan(layout, avatar, cfg, run, max_minutes)


@dataclass(frozen=True)
class EnhanceStage:
    """Stage 6: the face refiner, trained on the image GAN's output (amg.enhance); only for --enhance."""

    name: str = "enhance"
    required: bool = False
    config_type: type = EnhanceConfig

    def config_path(self, layout: Layout, avatar: str) -> Path:
        return layout.enhance_config(avatar)

    def artifacts(self, layout: Layout, avatar: str) -> tuple[Path, ...]:
        return layout.enhance_checkpoint(avatar), self.config_path(layout, avatar)

    def is_trained(self, layout: Layout, avatar: str) -> bool:
        from amg.enhance.train import enhance_trained

        return enhance_trained(layout, avatar)

    def is_done(self, layout: Layout, avatar: str, cfg: EnhanceConfig, run: TrainingRun) -> bool:
        from amg.enhance.train import enhance_done

        return enhance_done(layout, avatar, cfg)

    def train(
        self,
        layout: Layout,
        avatar: str,
        cfg: EnhanceConfig,
        run: TrainingRun,
        force: bool = False,
        max_minutes: float | None = None,
    ) -> dict:
        from amg.enhance.train import train_enhancer

        if force:
            layout.enhance_checkpoint(avatar).unlink(missing_ok=True)
        return train_enhancer(layout, avatar, cfg, run, max_minutes)


STAGES: tuple[Stage, ...] = (MotionStage(), GanStage(), EnhanceStage())


def stage_config(cfg: AvatarConfig, stage: Stage) -> Any:
    """The section of `cfg` that configures `stage`."""
    return getattr(cfg, stage.name)


def saved_stage_config(layout: Layout, avatar: str, section: str) -> Any | None:
    """The config `avatar`'s stage `section` was last trained with (None if never, or no such stage)."""
    stage = next((stage for stage in STAGES if stage.name == section), None)
    return None if stage is None else read_saved_config(stage.config_type, stage.config_path(layout, avatar))


def untrained_stages(layout: Layout, avatar: str) -> list[str]:
    """The required stages `avatar` lacks to render, in order (none: it renders)."""
    return [stage.name for stage in STAGES if stage.required and not stage.is_trained(layout, avatar)]


def avatar_renders(layout: Layout, avatar: str) -> bool:
    """Avatar `avatar` can render: every required stage is trained. The service asks this before listing an
    avatar as trained and accepting its jobs; `amg run` trains what `is_done` finds missing first."""
    return not untrained_stages(layout, avatar)


def render_artifacts(layout: Layout, avatar: str) -> tuple[Path, ...]:
    """The files that decide whether `avatar` renders (a cache of the answer watches them)."""
    return tuple(path for stage in STAGES if stage.required for path in stage.artifacts(layout, avatar))


def trained_on_older_tracks(layout: Layout, avatar: str) -> list[str]:
    """The trained stages whose files are older than the avatar's tracks."""
    tracks = layout.tracks(avatar)
    if not tracks.is_file():
        return []
    made = tracks.stat().st_mtime
    return [
        stage.name
        for stage in STAGES
        if stage.is_trained(layout, avatar)
        and any(p.is_file() and p.stat().st_mtime < made for p in stage.artifacts(layout, avatar))
    ]


def train_stages(
    layout: Layout,
    avatar: str,
    cfg: AvatarConfig,
    wanted: Callable[[Stage], bool],
    force: bool = False,
    max_minutes: float | None = None,
) -> dict[str, dict]:
    """Train, in order, every `wanted` stage that `cfg` leaves something to train in (all of them with `force`);
    returns each trained stage's report by name."""
    if not force and (outdated := trained_on_older_tracks(layout, avatar)):
        log.warning(
            "Avatar %r was preprocessed again after its %s models were trained (e.g. by a newer AMG): they keep "
            "working, but retrain them with `amg train DATAROOT %s --force` to use the new tracks.",
            avatar,
            " and ".join(outdated),
            avatar,
        )
    reports, run = {}, cfg.training_run()
    for stage in STAGES:
        section = stage_config(cfg, stage)
        if wanted(stage) and (force or not stage.is_done(layout, avatar, section, run)):
            reports[stage.name] = stage.train(layout, avatar, section, run, force=force, max_minutes=max_minutes)
    return reports
