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

import contextlib
import dataclasses
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from amg.config import config_from_dict, model_fields
from amg.distributed import any_rank, average_gradients, mean_over_ranks, world
from amg.errors import AmgError, DamagedFileError
from amg.fsutil import atomic_path
from amg.layout import damaged_file
from amg.progress import report

log = logging.getLogger(__name__)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Torch on one CPU thread inside the block, for the small motion networks. Splitting their small ops over
    threads gains little, and one thread needs only one free core when other processes want the rest.
    Measured (Audio→Expression on the 8-s sample, 2 cores, another process using about one): 27 ms/step on 1
    thread, 19 on 2; beside one more CPU-bound process, 44 and 43: a few seconds either way for 400 steps."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device() -> torch.device:
    """The GPU when there is one (a rank's own GPU under torchrun), else the CPU."""
    return torch.device("cuda", world().local_rank) if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """The generator for step `step`'s batch; it also reseeds torch, so dropout masks repeat on resume too."""
    rng = np.random.default_rng([seed, step])
    torch.manual_seed(int(rng.integers(2**62)))
    return rng


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
) -> Any:
    """One GAN step: the "discriminator" optimizer steps on `d_loss`, then `generator_loss()` (the loss and
    whatever the caller wants back) is computed with the discriminators frozen (its gradients flow through them,
    not into their weights) and the `generator` optimizer steps on it. Returns the second value."""
    optimizer["discriminator"].zero_grad(set_to_none=True)
    d_loss.backward()
    _step(optimizer["discriminator"])
    for net in discriminators:
        net.requires_grad_(False)
    try:
        g_loss, result = generator_loss()
        optimizer[generator].zero_grad(set_to_none=True)
        g_loss.backward()
        _step(optimizer[generator])
    finally:
        for net in discriminators:
            net.requires_grad_(True)
    return result


def _step(optimizer: torch.optim.Optimizer) -> None:
    """An optimizer step on the gradients averaged over the ranks (amg.distributed; one rank: as they are)."""
    average_gradients(p for group in optimizer.param_groups for p in group["params"])
    optimizer.step()


def save_sample_grid(path: Path, grid: np.ndarray) -> None:
    """An RGB uint8 training sample grid as a JPEG, written atomically (a viewer never sees half a file)."""
    import cv2

    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


def save_checkpoint(path: Path, **content: Any) -> None:
    """torch.save to a temporary file, then rename: a crash mid-write never corrupts the last checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(content, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`; DamagedFileError (saying how to retrain) when it cannot be read."""
    try:
        # weights_only=False: AMG checkpoints hold plain dicts of arrays and config values written by AMG itself.
        state = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways (zip, pickle, EOF) on a cut file
        raise damaged_file(Path(path), exc) from None
    if not isinstance(state, dict):
        raise damaged_file(Path(path), TypeError(f"holds a {type(state).__name__}, not an AMG checkpoint"))
    return state


def is_finished(path: Path) -> bool:
    """A finished checkpoint exists at `path` (a damaged one is not: training puts it aside and starts again)."""
    if not path.is_file():
        return False
    try:
        return bool(load_checkpoint(path).get("finished", False))
    except DamagedFileError:
        return False


def set_aside(path: Path) -> Path:
    """Rename a damaged file to FILE.damaged beside it, so that a new one does not overwrite what may be saved."""
    damaged = path.with_name(path.name + ".damaged")
    os.replace(path, damaged)
    return damaged


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
) -> dict[str, float]:
    """Train `model` for `config.steps` (resuming if possible) and save it to `path`; return the last eval.

    `config` is a dataclass saved in the checkpoint, whose `steps`, `eval_every` and `save_every` are the
    schedule; `extra` holds what inference needs besides the weights (normalisation statistics, feature layout,
    ...). `max_minutes` stops early, saving a resumable checkpoint. `images_fn(step) -> {tag: HWC uint8}` runs
    with each eval; its pictures go to TensorBoard. `desc` labels the progress bar, `progress` is the key its
    progress is reported under (amg.progress: a stage name).
    """
    total_steps, eval_every, save_every = config.steps, config.eval_every, config.save_every
    config_dict = dataclasses.asdict(config)
    start, metrics = _resume(path, model, optimizer, config)
    # Under torchrun every rank trains; rank 0 alone evaluates and writes (amg.distributed).
    main = world().main
    writer = _tensorboard(log_dir) if main else None
    eval_fn, images_fn = (eval_fn, images_fn) if main else (None, None)
    deadline = time.monotonic() + max_minutes * 60 if max_minutes else None

    def save(step: int, finished: bool) -> None:
        if not main:
            return
        save_checkpoint(
            path,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            step=step,
            finished=finished,
            config=config_dict,
            metrics=metrics,
            **(extra or {}),
        )

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


def _resume(path: Path, model: torch.nn.Module, optimizer, config: Any) -> tuple[int, dict[str, float]]:
    """The step to start from and the last eval metrics: the checkpoint's when it was made with the same model
    fields as `config` (its schedule, such as the number of steps, may differ: training continues), else 0."""
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
    if not same_model(state.get("config"), config):
        log.warning("Checkpoint %s was made with another model config: training it again from scratch.", path)
        return 0, {}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if config_from_dict(type(config), state["config"]) != config:  # parsed: an old spelling is no change
        log.info("Checkpoint %s: only the schedule changed; continuing it with the new one.", path.name)
    log.info("Resuming %s from step %d.", path.name, state["step"])
    return int(state["step"]), dict(state.get("metrics") or {})


def same_model(saved: dict[str, Any] | None, config: Any) -> bool:
    """Whether a checkpoint's saved config dict has the model fields of `config` (see amg.config.model_fields)."""
    if not isinstance(saved, dict):
        return False
    try:
        return model_fields(config_from_dict(type(config), saved)) == model_fields(config)
    except AmgError:  # a field that no longer exists, or a value the config refuses now
        return False


def checkpoint_done(path: Path, config: Any) -> bool:
    """A finished checkpoint at `path` trained with `config`'s model fields for at least its steps: nothing to
    train. (A larger `steps` extends a finished training; another model field trains it again.)"""
    if not path.is_file():
        return False
    try:
        state = load_checkpoint(path)
    except DamagedFileError:
        return False  # training puts it aside and starts again
    done = bool(state.get("finished")) and int(state.get("step", 0)) >= config.steps
    return done and same_model(state.get("config"), config)


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
