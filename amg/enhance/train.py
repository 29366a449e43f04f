"""`amg train --stage enhance`: the face refiner, learned from the avatar's own video.

Training pairs: the trained generator re-renders the avatar's training frames from their tracked landmarks
(each frame's pose reference kept 25 frames away, as in the generator's training, so its output looks like what
it makes for new speech); the face crop of that output, upsampled to `scale` x, is the input, and the real
frame's face crop at that size the target. Losses: mouth-weighted L1, a conditional 2-scale PatchGAN (LSGAN)
with feature matching. Metrics on the generator's held-out frames: PSNR/SSIM and mouth sharpness of the
refined and of the plain upsampled face against the real one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from amg.config import AvatarConfig, EnhanceConfig, save_config, saved_holdout
from amg.core.checkpoints import TrainingRun, checkpoint_done, is_finished
from amg.core.device import pick_device
from amg.core.distributed import world
from amg.core.images import mean_frame_scores, mean_sharpness
from amg.core.layout import Layout
from amg.core.precision import PrecisionPlan, resolve_precision
from amg.core.split import held_out_split
from amg.core.tensors import to_tensor, to_uint8
from amg.core.training import (
    OptimizerGroup,
    adversarial_update,
    batch_rng,
    image_grid,
    run_trainer,
    save_sample_grid,
    seed_everything,
)
from amg.enhance.crop import crop_face, face_crop_boxes, refine_size
from amg.enhance.networks import Refiner
from amg.gan import losses
from amg.gan.networks import MultiScaleDiscriminator
from amg.media import iter_frames, pick_frames
from amg.motion.tracks import tracked_motion
from amg.tracking.boxes import mouth_boxes
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)

VAL_FRAMES = 24  # held-out pairs the metrics and sample grids are computed on


def enhance_trained(layout: Layout, name: str) -> bool:
    """The face refiner of `name` can refine: a finished checkpoint."""
    return is_finished(layout.enhance_checkpoint(name))


def enhance_done(layout: Layout, name: str, cfg: EnhanceConfig) -> bool:
    """Nothing of `cfg` is left to train: finished with its model fields, for at least its steps."""
    return checkpoint_done(layout.enhance_checkpoint(name), cfg)


@dataclass
class EnhancePairs:
    inputs: np.ndarray  # (N, S, S, 3) uint8: the generator's face crop, upsampled
    targets: np.ndarray  # (N, S, S, 3) uint8: the real face crop
    mouth: np.ndarray  # (N, 4) mouth boxes in crop pixels
    n_train: int  # the first n_train pairs are training frames, the rest held out

    @property
    def size(self) -> int:
        return self.inputs.shape[1]


def _real_crops(layout: Layout, name: str, index: np.ndarray, boxes: np.ndarray, gan_size: int, out_size: int):
    """Face crops of the real frames `index`, taken from the preprocessed crop at its full size."""
    frames = pick_frames(iter_frames(layout.frames_video(name)), index)
    return np.stack(
        [crop_face(frames[i], box, out_size, frames[i].shape[0] / gan_size) for i, box in zip(index, boxes)]
    )


def make_pairs(layout: Layout, name: str, cfg: EnhanceConfig, precision: str = "fp32") -> EnhancePairs:
    """Training pairs from the generator's training frames, and held-out pairs from its held-out tail."""
    from amg.gan.inference import AvatarGenerator

    tracks = Tracks.load(layout.tracks(name))
    holdout = saved_holdout(layout.gan_config(name))
    holdout = AvatarConfig().holdout if holdout is None else holdout
    generator = AvatarGenerator(layout, name, precision=precision)
    size = generator.size
    n = tracks.n_frames
    stop = held_out_split(n, holdout)[0].stop  # the generator's own training frames end here
    boxes = face_crop_boxes(tracks.landmarks, tracks.size, size, cfg.margin, cfg.smooth_window)
    out_size = refine_size(boxes[0, 2], cfg.scale)
    train = np.arange(min(stop, cfg.max_frames))
    val = np.arange(stop, n)[:VAL_FRAMES]
    inputs = []
    for index, exclusion in ((train, cfg.reference_exclusion), (val, 0)):
        if not len(index):
            continue
        motion = tracked_motion(tracks, slice(index[0], index[-1] + 1))
        generated = generator.frames(motion, frame_index=index, exclusion=exclusion)
        for i, frame in zip(index, tqdm(generated, total=len(index), desc="Enhance pairs", unit="frame", leave=False)):
            inputs.append(crop_face(frame, boxes[i], out_size))
    index = np.concatenate([train, val])
    targets = _real_crops(layout, name, index, boxes[index], size, out_size)
    mouth = _mouth_boxes_in_crops(tracks, index, boxes[index], size, out_size)
    return EnhancePairs(np.stack(inputs), targets, mouth, len(train))


def _mouth_boxes_in_crops(tracks: Tracks, index: np.ndarray, boxes: np.ndarray, size: int, out_size: int) -> np.ndarray:
    mouth = mouth_boxes(tracks.landmarks[index], tracks.size, size).astype(np.float64)
    corner = boxes[:, :2] - boxes[:, 2:3] / 2
    scale = out_size / boxes[:, 2:3]
    in_crop = np.concatenate([(mouth[:, :2] - corner) * scale, (mouth[:, 2:] - corner) * scale], axis=1)
    return np.clip(in_crop.round(), 0, out_size).astype(int)


class EnhanceTrainer:
    def __init__(
        self, cfg: EnhanceConfig, pairs: EnhancePairs, layout: Layout, name: str, precision: PrecisionPlan | None = None
    ):
        self.cfg, self.pairs, self.layout, self.name = cfg, pairs, layout, name
        self.device = pick_device()
        self.precision = precision or resolve_precision("fp32", self.device)
        self.nets = torch.nn.ModuleDict(
            {"refiner": Refiner(cfg.ngf, cfg.n_blocks), "discriminator": MultiScaleDiscriminator(6, cfg.ndf, 2)}
        ).to(self.device)
        self.precision.prepare(self.nets)
        self.scaler = self.precision.grad_scaler()
        betas = (0.5, 0.999)
        self.optim = OptimizerGroup(
            refiner=torch.optim.AdamW(self.nets["refiner"].parameters(), cfg.lr_g, betas=betas),
            discriminator=torch.optim.AdamW(self.nets["discriminator"].parameters(), cfg.lr_d, betas=betas),
        )
        self.val = np.arange(pairs.n_train, len(pairs.inputs))
        self.last_refined: np.ndarray | None = None

    def step(self, step: int) -> dict[str, float]:
        cfg, p, dev = self.cfg, self.pairs, self.device
        index = batch_rng(cfg.seed, step).integers(0, p.n_train, size=cfg.batch_size)
        index = world().share(index)  # under torchrun, this rank's part of the batch (amg.core.distributed)
        images = self.precision.images
        source, real = images(to_tensor(p.inputs[index], dev)), images(to_tensor(p.targets[index], dev))
        d = self.nets["discriminator"]
        with self.precision.autocast():
            refined = self.nets["refiner"](source)
            real_out = d(torch.cat([source, real], dim=1))
            d_loss = losses.discriminator_loss(real_out, d(torch.cat([source, refined.detach()], dim=1)))

        def refiner_loss() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            with self.precision.autocast():
                fake_out = d(torch.cat([source, refined], dim=1))
                weights = losses.mouth_weight_map(p.mouth[index], p.size, cfg.mouth_weight).to(dev)
                terms = {
                    "l1": losses.weighted_l1(refined.float(), real, weights),
                    "adversarial": losses.generator_adversarial_loss(fake_out),
                    "feature_matching": losses.feature_matching_loss(real_out, fake_out),
                }
                g_loss = cfg.l1_weight * terms["l1"] + cfg.gan_weight * terms["adversarial"]
                g_loss = g_loss + cfg.feature_matching_weight * terms["feature_matching"]
            return g_loss, terms | {"g_loss": g_loss}

        terms = adversarial_update(self.optim, "refiner", (d,), d_loss, refiner_loss, self.scaler)
        g_loss = terms.pop("g_loss")
        return {"g_loss": g_loss.item(), "d_loss": d_loss.item()} | {k: v.item() for k, v in terms.items()}

    @torch.no_grad()
    def refine(self, crops: np.ndarray) -> np.ndarray:
        with self.precision.autocast():  # as it will render
            return to_uint8(self.nets["refiner"](self.precision.images(to_tensor(crops, self.device))))

    def evaluate(self) -> dict[str, float]:
        p = self.pairs
        if not len(self.val):
            return {}
        self.last_refined = self.refine(p.inputs[self.val])
        real, mouth = p.targets[self.val], p.mouth[self.val]
        scores = {"real_mouth_sharpness": mean_sharpness(real, mouth)}
        for label, images in (("refined", self.last_refined), ("upsampled", p.inputs[self.val])):
            scores |= {f"{label}_{key}": value for key, value in mean_frame_scores(images, real).items()}
            scores[f"{label}_mouth_sharpness"] = mean_sharpness(images, mouth)
        return scores

    def sample_images(self, step: int) -> dict[str, np.ndarray]:
        if self.last_refined is None:
            return {}
        grid = image_grid(self.pairs.inputs[self.val], self.last_refined, self.pairs.targets[self.val])
        save_sample_grid(self.layout.enhance_samples_dir(self.name) / f"step_{step:07d}.jpg", grid)
        return {"held_out/upsampled|refined|real": grid}


def train_enhancer(
    layout: Layout, name: str, cfg: EnhanceConfig, run: TrainingRun, max_minutes: float | None = None
) -> dict:
    """Train (or resume) the face refiner of avatar `name`, whose image GAN must be trained, in `run.precision`
    (it trains on the GAN's training frames: the GAN's holdout is its own)."""
    if enhance_done(layout, name, cfg):
        log.info("The face refiner of %r is already trained (use --force to retrain).", name)
        return {}
    seed_everything(cfg.seed)
    precision = resolve_precision(run.precision, pick_device())
    pairs = make_pairs(layout, name, cfg, precision.name)
    record = {"precision": precision.name}
    trainer = EnhanceTrainer(cfg, pairs, layout, name, precision)
    logs = layout.logs_dir(name) / "enhance"
    extra = {"crop_size": pairs.size}
    labels = ("Face refiner", "enhance")
    checkpoint = layout.enhance_checkpoint(name)
    companions = {layout.enhance_config(name): lambda path: save_config(cfg, path, run=record)}
    return run_trainer(
        trainer, checkpoint, cfg, logs, labels, extra=extra, max_minutes=max_minutes, run=record, companions=companions
    )
