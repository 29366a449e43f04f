"""Which frames of an avatar video train the models and which are held out: one rule for every stage and for
`amg eval`, so a model never sees a frame another stage (or the evaluation) holds out."""

from __future__ import annotations


def held_out_split(n_frames: int, holdout: float) -> tuple[slice, slice]:
    """Train on the first (1 - holdout) of `n_frames`, hold out its tail: a contiguous stretch never seen in
    training (neighbouring frames are nearly identical, so a random split would leak)."""
    cut = n_frames - int(round(n_frames * holdout))
    return slice(0, cut), slice(cut, n_frames)
