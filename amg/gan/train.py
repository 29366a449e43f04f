"""`amg train --stage gan`: the image GAN on the avatar's own video (resumable, time-budgeted, deterministic).

One step: a batch of short clips → generator → (1) discriminators learn real vs generated frames (multi-scale
PatchGAN, conditioned on the frame's conditioning), clips (3-D temporal discriminator) and the mouth crop's fine
detail; (2) the generator learns from mouth-weighted L1, the matte, the three discriminators' adversarial +
feature-matching terms and (when installed) a shift-tolerant LPIPS on the frame and on the mouth at 2x. An
exponential moving average of the generator is what renders (smoother, fewer GAN artefacts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from amg.conditioning import N_CHANNELS, conditioning_to_rgb
from amg.config import GanConfig, save_config
from amg.core.checkpoints import TrainingRun, checkpoint_done, is_finished
from amg.core.device import pick_device
from amg.core.distributed import world
from amg.core.fsutil import write_text
from amg.core.images import mean_frame_scores
from amg.core.layout import Layout
from amg.core.precision import PrecisionPlan, resolve_precision
from amg.core.tensors import to_uint8
from amg.core.training import (
    OptimizerGroup,
    adversarial_update,
    image_grid,
    run_trainer,
    save_sample_grid,
    seed_everything,
    step_seeds,
)
from amg.gan import losses
from amg.gan.baselines import Baselines
from amg.gan.data import ClipBatch, GanData, clip_batch, load_gan_data, make_references
from amg.gan.inputs import GeneratorInputs, with_context
from amg.gan.networks import (
    Generator,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    TemporalDiscriminator,
    build_generator,
)
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)


def gan_trained(layout: Layout, name: str) -> bool:
    """The image GAN of `name` can render: a finished checkpoint and its candidate bank."""
    return is_finished(layout.gan_checkpoint(name)) and layout.gan_references(name).is_file()


def gan_done(layout: Layout, name: str, cfg: GanConfig, holdout: float) -> bool:
    """Nothing of `cfg` is left to train: finished with its model fields and `holdout`, for at least its steps."""
    if not (layout.gan_checkpoint(name).is_file() and layout.gan_references(name).is_file()):
        return False
    return checkpoint_done(layout.gan_checkpoint(name), sized_config(layout, name, cfg), holdout)


def sized_config(layout: Layout, name: str, cfg: GanConfig) -> GanConfig:
    """`cfg` for avatar `name`: a size of 0 becomes its preprocessed crop's side."""
    return cfg if cfg.size else cfg.for_crop(Tracks.load(layout.tracks(name)).size)


def trains_mouth_discriminator(cfg: GanConfig) -> bool:
    """Whether the mouth discriminator is trained: weighed, and the generator no larger than the mouth crop
    holds a mouth at its own resolution for (GanConfig.mouth_gan_max_size)."""
    return cfg.mouth_gan_weight > 0 and cfg.size <= cfg.mouth_gan_max_size


def build_networks(cfg: GanConfig, inputs: GeneratorInputs) -> nn.ModuleDict:
    generator = build_generator(cfg, inputs)
    ema = build_generator(cfg, inputs)
    ema.load_state_dict(generator.state_dict())
    ema.requires_grad_(False)
    nets = {
        "generator": generator,
        "generator_ema": ema,
        "discriminator": MultiScaleDiscriminator(N_CHANNELS + 3, cfg.ndf, cfg.n_scales),
        "temporal": TemporalDiscriminator(N_CHANNELS + 3, cfg.ndf),
    }
    if trains_mouth_discriminator(cfg):
        # Unlike the frame discriminators, without spectral normalisation and shown fine detail: one like them
        # (spectral-normalised, whole pictures) stayed at chance and raised the mouth's sharpness only from 0.75x to
        # 0.80x the real frames' (docs/decisions.md).
        nets["mouth"] = PatchDiscriminator(N_CHANNELS + 3, cfg.ndf, spectral=False)
    return nn.ModuleDict(nets)


def _perceptual(cfg: GanConfig, device: torch.device):
    if cfg.perceptual_weight <= 0 and cfg.perceptual_full_weight <= 0:
        return None
    from amg.gan.perceptual import ShiftTolerantLPIPS, perceptual_weights_path

    if perceptual_weights_path() is None:
        log.warning("stlpips-pytorch is not installed: training without the perceptual loss (see README).")
        return None
    return ShiftTolerantLPIPS().to(device)


@dataclass
class HeldOut:
    """Fixed held-out frames, their inputs, and the no-learning baselines' scores on them."""

    index: np.ndarray
    dynamic: torch.Tensor
    conditioning: np.ndarray  # (n, H, W, C) uint8
    real: np.ndarray  # (n, H, W, 3) uint8
    mouth: np.ndarray
    warped: np.ndarray  # (n, H, W, 3) uint8: the warp baseline's frames (for the sample grid)
    baselines: dict[str, dict[str, float]]  # "copy" and "warp" of the nearest-landmark training frame


def held_out_frames(data: GanData, inputs: GeneratorInputs, n: int) -> HeldOut:
    t = data.tracks
    index = np.unique(np.linspace(data.val.start, data.val.stop - 1, n).round().astype(int))
    cond = inputs.render(t.landmarks[index], t.body[index])
    dynamic = []
    for i in index:  # each frame with its own temporal context
        frames = with_context(i, i + 1, inputs.context, t.n_frames)
        picks = inputs.candidates(t.landmarks[[i]], t.rotation[[i]], t.translation[[i]], t.scale[[i]])
        maps = inputs.candidate_maps(t.landmarks[[i]], t.body[[i]], picks)
        dynamic.append(inputs.dynamic(inputs.render(t.landmarks[frames], t.body[frames]), maps, picks))
    mouth = mouth_boxes(t.landmarks[index], t.size, data.size)
    real = data.frames[index]
    # Training frames are searched by their tracked landmarks, as the targets' are; every frame is in memory.
    baselines = Baselines(t.landmarks, t.landmarks, t.body, t.size, data.train)
    made = baselines.render(lambda _index: data.frames, t.landmarks[index], t.body[index])
    baseline = {name: np.stack(list(frames)) for name, frames in made.items()}
    baselines = {name: mean_frame_scores(frames, real, {"mouth": mouth}) for name, frames in baseline.items()}
    return HeldOut(index, torch.cat(dynamic), cond, real, mouth, baseline["warp"], baselines)


class GanTrainer:
    """Holds the networks, optimizers and data of one training run; `step` and `evaluate` feed run_training."""

    def __init__(
        self,
        cfg: GanConfig,
        data: GanData,
        inputs: GeneratorInputs,
        layout: Layout,
        name: str,
        precision: PrecisionPlan | None = None,
    ):
        self.cfg, self.data, self.inputs = cfg, data, inputs
        self.layout, self.name = layout, name
        self.device = inputs.device
        self.precision = precision or resolve_precision("fp32", self.device)
        self.nets = self.precision.prepare(build_networks(cfg, inputs).to(self.device))
        self.discriminators = [net for key, net in self.nets.items() if key not in ("generator", "generator_ema")]
        betas = (0.5, 0.999)
        self.optim = OptimizerGroup(
            generator=torch.optim.AdamW(
                self.nets["generator"].parameters(), cfg.lr_g, betas=betas, weight_decay=cfg.weight_decay
            ),
            discriminator=torch.optim.AdamW(
                [p for net in self.discriminators for p in net.parameters()],
                cfg.lr_d,
                betas=betas,
                weight_decay=cfg.weight_decay,
            ),
        )
        self.perceptual = _perceptual(cfg, self.device)
        if self.perceptual is not None:
            self.precision.prepare(self.perceptual)
        self.scaler = self.precision.grad_scaler()
        self.held_out = held_out_frames(data, inputs, cfg.eval_frames)
        self.last_generated: np.ndarray | None = None  # the held-out frames of the latest evaluation

    def _generate(self, net: Generator, dynamic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return net(dynamic, net.encode_static(self.inputs.static), self.inputs.background)

    def _discriminate(self, batch: ClipBatch, frames: torch.Tensor) -> dict[str, list]:
        """The discriminators' outputs for `frames` (B*L, 3, H, W): per frame at each scale ("frame"), per clip
        ("clip") and, with a mouth discriminator, per mouth crop resampled to GanConfig.mouth_crop ("mouth")."""
        # In a reduced precision the discriminators' input is cast once here (their first convolutions would cast
        # it anyway), so that its downsampling for the coarser scales moves half the bytes.
        x = torch.cat([batch.conditioning, frames], dim=1).to(self.precision.dtype)
        outputs = {"frame": self.nets["discriminator"](x)}
        with self.precision.volumetric():
            outputs["clip"] = [self.nets["temporal"](x.float(), self.cfg.clip_frames)]
        if "mouth" in self.nets:
            crops = losses.mouth_detail_crops(x, batch.mouth, self.cfg.mouth_crop, N_CHANNELS)
            outputs["mouth"] = [self.nets["mouth"](crops)]
        return outputs

    def make_batch(self, step: int) -> tuple[int, ClipBatch]:
        """Step `step`'s batch and the seed of torch's generator for that step (dropout, if any)."""
        cfg, data = self.cfg, self.data
        rng, torch_seed = step_seeds(cfg.seed, step)
        starts = rng.integers(data.train.start, data.train.stop - cfg.clip_frames + 1, size=cfg.batch_clips)
        starts = world().share(starts)  # under torchrun, this rank's part of the batch (amg.core.distributed)
        return torch_seed, clip_batch(data, self.inputs, starts, cfg.clip_frames, cfg.reference_exclusion)

    def step(self, step: int) -> dict[str, float]:
        cfg, data = self.cfg, self.data
        torch_seed, batch = self.make_batch(step)
        torch.manual_seed(torch_seed)
        with self.precision.autocast():
            fake, matte = self._generate(self.nets["generator"], batch.dynamic)

            # Discriminators.
            real = self._discriminate(batch, batch.real)
            fake_outputs = self._discriminate(batch, fake.detach())
            d_terms = {key: losses.discriminator_loss(real[key], fake_outputs[key]) for key in real}

        def generator_loss() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with self.precision.autocast():
                fake_outputs = self._discriminate(batch, fake)
                weights = losses.mouth_weight_map(batch.mouth, data.size, cfg.mouth_weight).to(self.device)
                terms = {
                    "l1": losses.weighted_l1(fake, batch.real, weights),
                    "matte": (matte - batch.matte).abs().mean(),
                    "adversarial": losses.generator_adversarial_loss(fake_outputs["frame"]),
                    "feature_matching": losses.feature_matching_loss(real["frame"], fake_outputs["frame"]),
                    "temporal": losses.generator_adversarial_loss(fake_outputs["clip"]),
                }
                weighted = {
                    "l1": cfg.l1_weight,
                    "matte": cfg.alpha_weight,
                    "adversarial": cfg.gan_weight,
                    "feature_matching": cfg.feature_matching_weight,
                    "temporal": cfg.temporal_weight,
                }
                if "mouth" in fake_outputs:
                    terms["mouth_adversarial"] = losses.generator_adversarial_loss(fake_outputs["mouth"])
                    terms["mouth_feature_matching"] = losses.feature_matching_loss(real["mouth"], fake_outputs["mouth"])
                    weighted["mouth_adversarial"] = cfg.mouth_gan_weight * cfg.gan_weight
                    weighted["mouth_feature_matching"] = cfg.mouth_gan_weight * cfg.feature_matching_weight
                if self.perceptual is not None:
                    fake_mouth = losses.crop_resized(fake, batch.mouth, cfg.mouth_crop)
                    real_mouth = losses.crop_resized(batch.real, batch.mouth, cfg.mouth_crop)
                    terms["perceptual_mouth"] = self.perceptual(fake_mouth, real_mouth).mean()
                    weighted["perceptual_mouth"] = cfg.perceptual_weight
                    if cfg.perceptual_full_weight > 0:
                        terms["perceptual"] = self.perceptual(fake, batch.real).mean()
                        weighted["perceptual"] = cfg.perceptual_full_weight
                g_loss = sum(weighted[k] * v for k, v in terms.items())
            return g_loss, terms | {"g_loss": g_loss}

        d_weights = {"frame": 1.0, "clip": cfg.temporal_weight, "mouth": cfg.mouth_gan_weight}
        d_loss = sum(d_weights[key] * value for key, value in d_terms.items())
        terms = adversarial_update(self.optim, "generator", self.discriminators, d_loss, generator_loss, self.scaler)
        self._update_ema(step)
        values = {"g_loss": terms.pop("g_loss")} | {f"d_{key}": value for key, value in d_terms.items()} | terms
        return {k: v.item() for k, v in values.items()}

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # Warm-up: early on the average would mostly remember the random initialisation.
        decay = min(self.cfg.ema_decay, (1 + step) / (10 + step))
        for p_ema, p in zip(self.nets["generator_ema"].parameters(), self.nets["generator"].parameters()):
            p_ema.lerp_(p, 1 - decay)

    def generated_held_out(self) -> np.ndarray:
        ema = self.nets["generator_ema"]
        with self.precision.autocast():  # as it will render
            frames = [self._generate(ema, x)[0] for x in self.held_out.dynamic.split(8)]
        return to_uint8(torch.cat(frames))

    def evaluate(self) -> dict[str, float]:
        h = self.held_out
        self.last_generated = self.generated_held_out()  # the sample grid drawn right after shows these frames
        scores = mean_frame_scores(self.last_generated, h.real, {"mouth": h.mouth})
        baselines = {f"{name}_{k}": v for name, scores in h.baselines.items() for k, v in scores.items()}
        return scores | baselines

    def sample_images(self, step: int) -> dict[str, np.ndarray]:
        h = self.held_out
        conditioning = np.stack([conditioning_to_rgb(c) for c in h.conditioning])
        grid = image_grid(conditioning, h.warped, self.last_generated, h.real)
        save_sample_grid(self.layout.gan_samples_dir(self.name) / f"step_{step:07d}.jpg", grid)
        return {"held_out/conditioning|warp baseline|generated|real": grid}


def train_gan(layout: Layout, name: str, cfg: GanConfig, run: TrainingRun, max_minutes: float | None = None) -> dict:
    """Train (or resume) the image GAN of avatar `name` on all but the `run.holdout` tail of its video, in
    `run.precision`; returns the held-out metrics next to the baselines'."""
    cfg = sized_config(layout, name, cfg)  # once: gan_done below then finds the size set
    if gan_done(layout, name, cfg, run.holdout):
        log.info("The image GAN of %r is already trained (use --force to retrain).", name)
        return json.loads(layout.gan_report(name).read_text()) if layout.gan_report(name).is_file() else {}
    seed_everything(cfg.seed)
    device = pick_device()
    precision = resolve_precision(run.precision, device)
    data = load_gan_data(layout, name, cfg.size, run.holdout)
    references = make_references(data, layout, name, cfg.bank_size)
    inputs = GeneratorInputs(
        references,
        cfg.context,
        cfg.n_candidates,
        cfg.candidate_hysteresis,
        device,
        cfg.mouth_hysteresis,
        channels_last=precision.reduced,
        dtype=precision.dtype,
    )
    trainer = GanTrainer(cfg, data, inputs, layout, name, precision)
    extra = {"dynamic_channels": inputs.dynamic_channels, "static_channels": inputs.static_channels}
    logs, labels = layout.logs_dir(name) / "gan", ("Image GAN", "gan")
    record = run.record(precision.name)
    # The generator renders from its candidate bank: the two and the config are only ever replaced together.
    companions = {
        layout.gan_references(name): references.save,
        layout.gan_config(name): lambda path: save_config(cfg, path, run=record),
    }
    metrics = run_trainer(
        trainer,
        layout.gan_checkpoint(name),
        cfg,
        logs,
        labels,
        extra=extra,
        max_minutes=max_minutes,
        run=record,
        companions=companions,
    )
    report = {"video": name, "held_out_frames": len(trainer.held_out.index), "precision": precision.name}
    report["metrics"] = metrics
    if world().main:  # under torchrun, rank 0 alone writes
        write_text(layout.gan_report(name), json.dumps(report, indent=2))
    return report
