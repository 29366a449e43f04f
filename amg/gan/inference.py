"""Rendering with a trained avatar: predicted motion → conditioning → generator → frames, streamed in chunks."""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch

from amg.concurrency import prefetch
from amg.config import GanConfig, config_from_dict
from amg.errors import AmgError
from amg.gan.inputs import GeneratorInputs, to_uint8, with_context
from amg.gan.references import AvatarReferences
from amg.gan.train import build_generator
from amg.layout import Layout
from amg.motion.stage import MotionTracks
from amg.training import load_checkpoint, pick_device

log = logging.getLogger(__name__)


class AvatarGenerator:
    """A trained avatar's generator (the EMA weights), its references, and the static inputs encoded once."""

    def __init__(self, layout: Layout, name: str, device: torch.device | None = None):
        path = layout.gan_checkpoint(name)
        if not (path.is_file() and layout.gan_references(name).is_file()):
            raise AmgError(f"Avatar {name!r} has no image generator: run `amg train ... --stage gan` first.")
        state = load_checkpoint(path)
        if not state.get("finished"):
            log.warning("The image GAN of %r is not fully trained (step %d): rendering with it anyway.", name, state["step"])
        self.config = config_from_dict(GanConfig, state["config"])
        self.device = device or pick_device()
        self.inputs = GeneratorInputs(AvatarReferences.load(layout.gan_references(name)), self.config.context, self.device)
        self.generator = build_generator(self.config, self.inputs).to(self.device).eval()
        prefix = "generator_ema."
        self.generator.load_state_dict({k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)})
        with torch.no_grad():
            self.static_code = self.generator.encode_static(self.inputs.static)

    @property
    def size(self) -> int:
        return self.inputs.size

    def _chunk_inputs(self, motion: MotionTracks, chunk: int) -> Iterator[torch.Tensor]:
        c, n = self.inputs.context, motion.n_frames
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            frames = with_context(start, stop, c, n)
            conditioning = self.inputs.render(motion.landmarks[frames], motion.body[frames])
            span = slice(start, stop)
            bank = self.inputs.nearest_bank(motion.rotation[span], motion.translation[span], motion.scale[span])
            yield self.inputs.dynamic(conditioning, bank)

    @torch.no_grad()
    def frames(self, motion: MotionTracks, chunk: int = 32) -> Iterator[np.ndarray]:
        """Yield the generated RGB uint8 crop frames one by one; conditioning for the next chunk is drawn in a
        background thread while the generator runs (OpenCV releases the GIL)."""
        for dynamic in prefetch(self._chunk_inputs(motion, chunk), depth=2):
            frames, _ = self.generator(dynamic, self.static_code, self.inputs.background)
            yield from to_uint8(frames)
