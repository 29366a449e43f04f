"""What every AMG training loop shares: device choice, seeding, atomic resumable checkpoints, progress, logs.

A stage's training code supplies `step_fn(step) -> {name: value}` (forward, backward, optimizer step) and
optionally `eval_fn() -> {name: value}`; `run_training` does the rest:

    * resumes from the checkpoint at `path` if an unfinished one exists (same config), skips if finished;
    * shows a progress bar with ETA; logs scalars to TensorBoard under `log_dir`;
    * saves atomically every `save_every` steps and at the end (`finished=True`), so an interrupted run
      loses at most `save_every` steps.

Batches must be drawn from `batch_rng(seed, step)`: a generator seeded by (seed, step) makes a resumed run
draw exactly the batches (and dropout masks) an uninterrupted run would have drawn, without saving RNG state.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from amg.core.checkpoints import Companions, load_checkpoint, same_training, save_checkpoint, set_aside
from amg.core.dataclass_io import config_from_dict
from amg.core.distributed import any_rank, average_gradients, mean_over_ranks, world
from amg.core.errors import DamagedFileError
from amg.core.fsutil import atomic_path
from amg.core.progress import report

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """The generator for step `step`'s batch; it also reseeds torch, so dropout masks repeat on resume too."""
    rng, torch_seed = step_seeds(seed, step)
    torch.manual_seed(torch_seed)
    return rng


def step_seeds(seed: int, step: int) -> tuple[np.random.Generator, int]:
    """What batch_rng draws for step `step`, without seeding torch yet: the batch's generator and torch's seed
    (so that another thread can build the batch while the step before it trains)."""
    rng = np.random.default_rng([seed, step])
    return rng, int(rng.integers(2**62))


def set_cosine_lr(optimizer: torch.optim.Optimizer, base_lr: float, step: int, total_steps: int) -> None:
    """Cosine decay from `base_lr` at step 0 to 0 at `total_steps`, written into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * 0.5 * (1 + np.cos(np.pi * step / max(total_steps, 1)))


def image_grid(*columns: np.ndarray, rows: int = 4) -> np.ndarray:
    """Up to `rows` evenly spaced examples, one per row, each showing the same index of every column (equal-sized
    uint8 RGB images) side by side: the sample grids of TensorBoard and the checkpoint folder."""
    picks = np.linspace(0, len(columns[0]) - 1, min(rows, len(columns[0]))).round().astype(int)
    return np.concatenate([np.concatenate([column[i] for column in columns], axis=1) for i in picks])


def adversarial_update(
    optimizer: OptimizerGroup,
    generator: str,
    discriminators: Sequence[torch.nn.Module],
    d_loss: torch.Tensor,
    generator_loss: Callable[[], tuple[torch.Tensor, Any]],
    scaler: torch.amp.GradScaler | None = None,
) -> Any:
    """One GAN step: the "discriminator" optimizer steps on `d_loss`, then `generator_loss()` (the loss and
    whatever the caller wants back) is computed with the discriminators frozen (its gradients flow through them,
    not into their weights) and the `generator` optimizer steps on it. Returns the second value. `scaler`
    scales the losses of an fp16 training (whose small gradients would underflow) and skips steps that overflow."""
    optimizer["discriminator"].zero_grad(set_to_none=True)
    _backward(d_loss, scaler)
    _step(optimizer["discriminator"], scaler)
    for net in discriminators:
        net.requires_grad_(False)
    try:
        g_loss, result = generator_loss()
        optimizer[generator].zero_grad(set_to_none=True)
        _backward(g_loss, scaler)
        _step(optimizer[generator], scaler)
    finally:
        for net in discriminators:
            net.requires_grad_(True)
    if scaler is not None:
        scaler.update()
    return result


def _backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    (loss if scaler is None else scaler.scale(loss)).backward()


def _step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> None:
    """An optimizer step on the gradients averaged over the ranks (amg.core.distributed; one rank: as they are)."""
    average_gradients(p for group in optimizer.param_groups for p in group["params"])
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)


def save_sample_grid(path: Path, grid: np.ndarray) -> None:
    """An RGB uint8 training sample grid as a JPEG, written atomically (a viewer never sees half a file)."""
    import cv2

    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


class OptimizerGroup:
    """Several optimizers (a GAN's generator and discriminators) saved and resumed as one."""

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self.optimizers[name]

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


class Trainer(Protocol):
    """A training loop's parts, as the image GAN's and the face refiner's trainers hold them."""

    nets: torch.nn.Module
    optim: OptimizerGroup

    def step(self, step: int) -> dict[str, float]: ...

    def evaluate(self) -> dict[str, float]: ...

    def sample_images(self, step: int) -> dict[str, np.ndarray]: ...


def run_trainer(
    trainer: Trainer, path: Path, config: Any, log_dir: Path, labels: tuple[str, str], **kwargs: Any
) -> dict:
    """run_training over a Trainer's networks, step, evaluation and sample pictures; `labels`: the progress
    bar's label and the progress key."""
    return run_training(
        path=path,
        model=trainer.nets,
        optimizer=trainer.optim,
        config=config,
        step_fn=trainer.step,
        eval_fn=trainer.evaluate,
        images_fn=trainer.sample_images,
        log_dir=log_dir,
        desc=labels[0],
        progress=labels[1],
        **kwargs,
    )


def run_training(
    *,
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | OptimizerGroup,
    config: Any,
    step_fn: Callable[[int], dict[str, float]],
    eval_fn: Callable[[], dict[str, float]] | None = None,
    log_dir: Path | None = None,
    desc: str = "Training",
    progress: str,
    extra: dict[str, Any] | None = None,
    max_minutes: float | None = None,
    images_fn: Callable[[int], dict[str, np.ndarray]] | None = None,
    run: dict[str, Any] | None = None,
    companions: Companions | None = None,
) -> dict[str, float]:
    """Train `model` for `config.steps` (resuming if possible) and save it to `path`; return the last eval.

    `config` is a dataclass saved in the checkpoint, whose `steps`, `eval_every` and `save_every` are the
    schedule; `extra` holds what inference needs besides the weights (normalisation statistics, feature layout,
    ...). `max_minutes` stops early, saving a resumable checkpoint. `images_fn(step) -> {tag: HWC uint8}` runs
    with each eval; its pictures go to TensorBoard. `desc` labels the progress bar, `progress` is the key its
    progress is reported under (amg.core.progress: a stage name). `run`: the run record saved with the
    checkpoint (amg.core.checkpoints.TrainingRun.record: another holdout starts it again). `companions`: the files
    that describe this training (its config, ...), written with its first checkpoint (amg.core.checkpoints.
    save_checkpoint): until then, whatever fails leaves the files as they were.
    """
    total_steps, eval_every, save_every = config.steps, config.eval_every, config.save_every
    config_dict = dataclasses.asdict(config)
    start, metrics = _resume(path, model, optimizer, config, (run or {}).get("holdout"))
    # Under torchrun every rank trains; rank 0 alone evaluates and writes (amg.core.distributed).
    main = world().main
    writer = _tensorboard(log_dir) if main else None
    eval_fn, images_fn = (eval_fn, images_fn) if main else (None, None)
    deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
    unsaved = dict(companions or {})  # they do not change during a run: written once

    def save(step: int, finished: bool) -> None:
        if not main:
            return
        save_checkpoint(
            path,
            unsaved,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            step=step,
            finished=finished,
            config=config_dict,
            metrics=metrics,
            run=run,
            **(extra or {}),
        )
        unsaved.clear()

    step = start
    model.train()
    with tqdm(total=total_steps, initial=start, desc=desc, unit="step", disable=not main) as bar:
        while step < total_steps:
            losses = mean_over_ranks(step_fn(step))
            step += 1
            bar.update(1)
            if main:
                report(progress, step, total_steps)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            _log_scalars(writer, "train", losses, step)
            if eval_fn is not None and (step % eval_every == 0 or step == total_steps):
                model.eval()
                with torch.no_grad():
                    metrics = eval_fn()
                model.train()
                _log_scalars(writer, "eval", metrics, step)
                if images_fn is not None:
                    with torch.no_grad():
                        _log_images(writer, images_fn(step), step)
            if step % save_every == 0 and step < total_steps:
                save(step, finished=False)
            if deadline is not None and any_rank(time.monotonic() > deadline) and step < total_steps:
                log.warning("%s: time budget reached at step %d of %d; run again to continue.", desc, step, total_steps)
                save(step, finished=False)
                break
    if step >= total_steps:
        save(step, finished=True)
    if writer is not None:
        writer.close()
    model.eval()
    return metrics


def _resume(
    path: Path, model: torch.nn.Module, optimizer, config: Any, holdout: float | None
) -> tuple[int, dict[str, float]]:
    """The step to start from and the last eval metrics: the checkpoint's when it was made with the same model
    fields as `config` on the same frames (its schedule, such as the number of steps, may differ: training
    continues), else 0."""
    if not path.is_file():
        return 0, {}
    try:
        state = load_checkpoint(path)
    except DamagedFileError as exc:
        kept = set_aside(path)
        log.warning(
            "DAMAGED CHECKPOINT: %s cannot be read (%s). It is kept as %s (not overwritten); training from scratch.",
            path,
            exc.reason,
            kept,
        )
        return 0, {}
    if not same_training(state, config, holdout):
        log.warning(
            "Checkpoint %s was made with another model config or holdout: training it again from scratch.", path
        )
        return 0, {}
    if set(state["model"]) != set(model.state_dict()):  # an older AMG's, before a network was added
        log.warning("Checkpoint %s holds other networks than this AMG trains: training it again from scratch.", path)
        return 0, {}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if config_from_dict(type(config), state["config"]) != config:  # parsed: an old spelling is no change
        log.info("Checkpoint %s: only the schedule changed; continuing it with the new one.", path.name)
    log.info("Resuming %s from step %d.", path.name, state["step"])
    return int(state["step"]), dict(state.get("metrics") or {})


def _tensorboard(log_dir: Path | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _log_scalars(writer, prefix: str, values: dict[str, float], step: int) -> None:
    if writer is None:
        return
    for name, value in values.items():
        writer.add_scalar(f"{prefix}/{name}", value, step)


def _log_images(writer, images: dict[str, np.ndarray], step: int) -> None:
    if writer is None:
        return
    for tag, image in images.items():
        writer.add_image(tag, image, step, dataformats="HWC")
