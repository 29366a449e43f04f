"""The avatar video's own frame around the generated crop (render.framing = source): real frames of the video,
at its own resolution, behind the crop, chosen to follow the generated body (amg.media.output.Backdrops)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from amg.config import FPS, trained_holdouts
from amg.core.images import resized
from amg.core.layout import Layout
from amg.core.split import held_out_split
from amg.media import FrameBank, iter_frames, make_banks, probe_video
from amg.media.output import Backdrops, FullFramePaster
from amg.tracking.tracks import Tracks


@dataclass
class SourceFraming:
    """A bank of real frames from the training part of the avatar video (never its held-out tail), with their
    tracked shoulders and hips: at most BANK_FRAMES frames and BANK_BYTES of pixels, decoded once per loaded
    avatar (with the render's other banks: amg.gan.inference.AvatarGenerator.source_banks)."""

    BANK_FRAMES = 64
    BANK_BYTES = 512 << 20

    size: tuple[int, int]  # the source frame's width and height
    frames: list[np.ndarray]  # none where the crop window holds the whole frame: nothing shows around it
    index: np.ndarray  # the bank frames' numbers in the video (25 fps)
    body: np.ndarray  # (K, 4, 3): each bank frame's tracked shoulders and hips (x, y, visibility), crop pixels
    window: np.ndarray  # the crop window in source pixels: x0, y0, side
    feather: float

    @classmethod
    def render_bank(cls, layout: Layout, name: str, feather: float) -> FrameBank:
        """The bank of a render: real frames from the part of the video every trained stage saw (never a
        held-out tail), to decode with the render's other banks (amg.media.make_banks)."""
        return cls.bank(layout, name, max(trained_holdouts(layout, name).values(), default=0.0), feather)

    @classmethod
    def of(cls, layout: Layout, name: str, holdout: float, feather: float) -> SourceFraming:
        """The bank of real frames from the first 1 - holdout of the video, decoded now."""
        return make_banks(iter_frames(layout.video_source(name), FPS), [cls.bank(layout, name, holdout, feather)])[0]

    @classmethod
    def bank(cls, layout: Layout, name: str, holdout: float, feather: float) -> FrameBank:
        """The frames `of` decodes, and how they become a SourceFraming."""
        tracks = Tracks.load(layout.tracks(name))
        info = probe_video(layout.video_source(name))
        x0, y0, side = (int(v) for v in tracks.window)
        if x0 <= 0 and y0 <= 0 and x0 + side >= info.width and y0 + side >= info.height:
            wanted = np.zeros(0, int)  # the crop window holds the whole frame: nothing shows around it
        else:
            train, _ = held_out_split(tracks.n_frames, holdout)
            room = max(cls.BANK_BYTES // (info.width * info.height * 3), 1)
            count = min(cls.BANK_FRAMES, room, train.stop - train.start)
            wanted = np.unique(np.linspace(train.start, train.stop - 1, count).round().astype(int))
        # Track i is the source's frame first_frame + i: the tracks cover the face's span of the video only.
        first = tracks.first_frame

        def make(picked: dict[int, np.ndarray]) -> SourceFraming:
            index = np.array([i for i in wanted if i + first in picked], int)  # a shorter video: what it has
            frames = [picked[i + first] for i in index]
            return cls((info.width, info.height), frames, index, tracks.body[index], tracks.window, feather)

        return FrameBank(wanted + first, make)

    def paster(self, bodies: np.ndarray | Callable[[], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """Crop → frame for the frames of one output, in order (each output keeps its own choice state); `bodies`
        as Backdrops takes them."""
        if not self.frames:  # the crop is the frame: only brought to the source's size
            return partial(resized, size=self.size)
        return FullFramePaster(Backdrops(self.frames, self.body, bodies), self.window, self.feather)
