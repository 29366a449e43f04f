"""The no-learning baseline every evaluation compares against: for each wanted frame, copy the training frame
whose face landmarks are nearest. It knows the same landmarks the generator is driven by, so beating it shows
what the learned image model adds over retrieving the avatar's own frames."""

from __future__ import annotations

import numpy as np


def nearest_landmark_index(train: np.ndarray, query: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(T, N, 2|3) training landmarks, (Q, N, 2|3) query landmarks → (Q,) index of the nearest training frame
    by the summed squared (x, y) distance over all points. Queried in chunks so memory stays O(chunk x T)."""
    bank = train[:, :, :2].reshape(len(train), -1).astype(np.float64)
    bank_norms = (bank**2).sum(axis=1)
    best = []
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk, :, :2].reshape(-1, bank.shape[1]).astype(np.float64)
        distances = (q**2).sum(axis=1)[:, None] - 2 * q @ bank.T + bank_norms[None]
        best.append(distances.argmin(axis=1))
    return np.concatenate(best) if best else np.zeros(0, int)
