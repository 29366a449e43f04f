"""Refining the face of generated frames as they stream out of the generator (stage 6 at render time)."""

from __future__ import annotations

from itertools import islice, tee
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from amg.config import EnhanceConfig, config_from_dict
from amg.core.checkpoints import load_checkpoint
from amg.core.device import pick_device
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.onnx_runtime import inference_engine
from amg.core.precision import resolve_precision
from amg.core.tensors import to_tensor, to_uint8
from amg.enhance.crop import FacePaster, crop_face, face_crop_boxes
from amg.enhance.networks import Refiner


class FaceEnhancer:
    """A trained face refiner: generated frames in, frames with the face refined (and `upscale` x larger) out.

    `engine` and `precision`: as the generator's (amg.core.onnx_runtime.inference_engine).
    """

    def __init__(
        self,
        layout: Layout,
        name: str,
        upscale: int = 1,
        device: torch.device | None = None,
        engine: str = "auto",
        precision: str = "auto",
    ):
        path = layout.enhance_checkpoint(name)
        if not path.is_file():
            raise AmgError(f"Avatar {name!r} has no face refiner: run `amg train ... --stage enhance` first.")
        if upscale not in (1, 2, 3, 4):
            raise AmgError(f"--upscale must be 1, 2, 3 or 4, got {upscale}.")
        state = load_checkpoint(path)
        self.cfg = config_from_dict(EnhanceConfig, state["config"])
        self.crop_size = int(state["crop_size"])
        self.device = device or pick_device()
        self.refiner = Refiner(self.cfg.ngf, self.cfg.n_blocks).to(self.device).eval()
        prefix = "refiner."
        self.refiner.load_state_dict({k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)})
        self.paster = FacePaster(self.crop_size, self.cfg.feather, upscale)
        example = torch.zeros(1, 3, self.crop_size, self.crop_size, device=self.device)
        plan = resolve_precision(precision, self.device)
        _, self.refine = inference_engine(self.refiner, example, None, engine, plan)

    def boxes(self, landmarks: np.ndarray, source_size: int, size: int) -> np.ndarray:
        """The sequence's steady face boxes (cx, cy, side) in pixels of the `size` generated frames."""
        return face_crop_boxes(landmarks, source_size, size, self.cfg.margin, self.cfg.smooth_window)

    @torch.no_grad()
    def frames(
        self, frames: Iterable[np.ndarray], landmarks: np.ndarray, source_size: int, batch: int = 8
    ) -> Iterator[np.ndarray]:
        """Refine each of `frames` (the generator's output, in order) whose face is at `landmarks` (T, N, 3) in a
        `source_size` crop (the motion's); yields the refined frames one by one."""
        stream = iter(frames)
        boxes = None
        done = 0
        while chunk := list(islice(stream, batch)):
            if boxes is None:
                boxes = self.boxes(landmarks, source_size, chunk[0].shape[0])
            span = boxes[done : done + len(chunk)]
            crops = np.stack([crop_face(frame, box, self.crop_size) for frame, box in zip(chunk, span)])
            refined = to_uint8(self.refine(to_tensor(crops, self.device)))
            yield from (self.paster(f, r, c, box) for f, r, c, box in zip(chunk, refined, crops, span))
            done += len(chunk)


def with_refined_copy(
    frames: Iterable[np.ndarray],
    enhancer: FaceEnhancer,
    landmarks: np.ndarray,
    source_size: int,
    write: Callable[[np.ndarray], None],
) -> Iterator[np.ndarray]:
    """Yield `frames` unchanged while handing each one's refined version to `write`: one pass over the generator
    makes both generated_video.mp4 and generated_superes.mp4 (the refiner reads a few frames ahead)."""
    plain, to_refine = tee(frames)
    for frame, refined in zip(plain, enhancer.frames(to_refine, landmarks, source_size)):
        write(refined)
        yield frame
