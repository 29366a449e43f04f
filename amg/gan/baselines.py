"""The two no-learning baselines every report measures the generator against, built once for all of them (the
image GAN's held-out report, `amg eval`): for each wanted frame, the training frame whose landmarks are nearest,
copied as it is ("copy") and mesh-warped onto the wanted landmarks ("warp")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from amg.conditioning.warp import warp_frames
from amg.gan.candidates import squared_distances

# Frames by index: an array of frames, or the frames a stream picked ({index: frame}).
FramePicker = Callable[[np.ndarray], Mapping[int, np.ndarray] | np.ndarray]


def nearest_landmark_index(train: np.ndarray, query: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(T, N, 2|3) training landmarks, (Q, N, 2|3) query landmarks → (Q,) index of the nearest training frame
    by the summed squared (x, y) distance over all points: the baselines' retrieval. Queried in chunks so
    memory stays O(chunk x T)."""
    bank = train[:, :, :2].reshape(len(train), -1)
    best = [
        squared_distances(query[start : start + chunk, :, :2].reshape(-1, bank.shape[1]), bank).argmin(axis=1)
        for start in range(0, len(query), chunk)
    ]
    return np.concatenate(best) if best else np.zeros(0, int)


@dataclass
class Baselines:
    """The training frames `frames` of a video, searched by `search` landmarks and warped by their tracked
    `landmarks` and `body` (full-video arrays, in pixels of a `source_size` crop).

    `search` may differ from `landmarks`: `amg eval` searches by landmarks reconstructed from the tracked pose
    and expression, the face model its driving landmarks come from, so that like is compared with like; the
    warp always moves a frame by the landmarks that match its pixels."""

    search: np.ndarray
    landmarks: np.ndarray
    body: np.ndarray
    source_size: int
    frames: slice

    def nearest(self, targets: np.ndarray) -> np.ndarray:
        """(Q,) video frame index of the training frame nearest to each of the (Q, N, 3) target landmarks."""
        return nearest_landmark_index(self.search[self.frames], targets) + self.frames.start

    def render(
        self, pick: FramePicker, targets: np.ndarray, target_body: np.ndarray
    ) -> dict[str, Iterator[np.ndarray]]:
        """Both baselines' frames for the targets, lazily; `pick(index)` gives the video's frames at `index`."""
        index = self.nearest(targets)
        chosen = pick(index)
        warped = (
            warp_frames(chosen[i][None], self.landmarks[[i]], self.body[[i]], lm, body, self.source_size)[0]
            for i, lm, body in zip(index, targets, target_body)
        )
        return {"copy": (chosen[i] for i in index), "warp": warped}
