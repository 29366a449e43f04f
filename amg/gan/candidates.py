"""Which bank frames the generator warps for each generated frame: retrieval by face geometry, mouth shape and
eye state, kept steady over time.

The warp (amg.render.warp) moves pixels well but cannot invent what the source frame does not show: teeth
behind closed lips, a lid over an open eye. So each generated frame gets one candidate per *slot*:

    face    nearest in all face-mesh points (pixels): the smallest warp, hence the least distortion;
    mouth   nearest in lip shape (lips around their centre, in units of the eye distance): teeth and lips as
            the target mouth shows them; plus a share of the face distance, so that it is not picked from
            a very different head pose;
    eyes    nearest in both eyes' lid opening: blinks and wide eyes; plus the same share of face distance.

Each distance is divided by the bank's own spread of that descriptor, so the shares mean the same for every
avatar. A slot keeps its previous candidate while that one costs at most (1 + hysteresis) times the best:
texture then changes only when a clearly better frame exists, not at every small landmark change. In training,
bank frames within `exclusion` frames of the target are ruled out (else the answer would be copied).
"""

from __future__ import annotations

import numpy as np

from amg.tracking import topology

SLOTS = ("face", "mouth", "eyes")
# Share of the (normalised) face distance added to the mouth and eye slots' costs.
FACE_SHARE = 0.5
# Cost added to excluded bank frames: finite, so that if every frame is excluded the least bad one still wins.
_EXCLUDED = 1e9


def squared_distances(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(Q, D) and (M, D) → (Q, M) squared Euclidean distances, without the (Q, M, D) intermediate."""
    q, b = query.astype(np.float64), bank.astype(np.float64)
    distances = (q**2).sum(axis=1)[:, None] - 2 * q @ b.T + (b**2).sum(axis=1)[None]
    return np.maximum(distances, 0.0)


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


def descriptors(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(T, N, 3) crop-pixel landmarks → per slot a (T, D) descriptor."""
    points = landmarks[:, : topology.NUM_LANDMARKS, :2].astype(np.float64)
    eye_distance = np.linalg.norm(points[:, topology.RIGHT_EYE_OUTER] - points[:, topology.LEFT_EYE_OUTER], axis=-1)
    lips = points[:, topology.LIPS]
    lips = (lips - lips.mean(axis=1, keepdims=True)) / np.maximum(eye_distance, 1e-6)[:, None, None]
    return {
        "face": points.reshape(len(points), -1),
        "mouth": lips.reshape(len(lips), -1),
        "eyes": topology.eye_openings(points),
    }


class CandidatePicker:
    """Retrieval over a bank of frames (their landmarks and frame numbers)."""

    def __init__(self, bank_landmarks: np.ndarray, bank_index: np.ndarray, n_candidates: int, hysteresis: float):
        if not 1 <= n_candidates <= len(SLOTS):
            raise ValueError(f"n_candidates must be 1..{len(SLOTS)}, got {n_candidates}")
        self.slots = SLOTS[:n_candidates]
        self.bank_index = np.asarray(bank_index)
        self.hysteresis = hysteresis
        self.bank = descriptors(bank_landmarks)
        # Each descriptor's total variance over the bank: distances in units of the avatar's own spread.
        self.spread = {k: max(float(((v - v.mean(axis=0)) ** 2).sum(axis=1).mean()), 1e-12) for k, v in self.bank.items()}

    def costs(self, landmarks: np.ndarray) -> np.ndarray:
        """(n, N, 3) target landmarks → (K, n, M) cost of each bank frame for each slot."""
        query = descriptors(landmarks)
        d = {k: squared_distances(query[k], self.bank[k]) / self.spread[k] for k in self.bank}
        slot_cost = {"face": d["face"], "mouth": d["mouth"] + FACE_SHARE * d["face"], "eyes": d["eyes"] + FACE_SHARE * d["face"]}
        return np.stack([slot_cost[s] for s in self.slots])

    def pick(
        self, landmarks: np.ndarray, frame_index: np.ndarray | None = None, exclusion: int = 0,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Bank entries (n, K) for n consecutive target frames; `previous` (K,) are the picks of the frame
        before (carried across chunks, so a long render switches texture as rarely as a short one)."""
        costs = self.costs(landmarks)
        if frame_index is not None and exclusion > 0:
            near = np.abs(np.asarray(frame_index)[:, None] - self.bank_index[None]) < exclusion
            costs = costs + _EXCLUDED * near[None]
        slots = np.arange(len(self.slots))
        picks = np.empty((costs.shape[1], len(self.slots)), np.intp)
        for t in range(costs.shape[1]):  # sequential by nature: each frame's choice depends on the last
            best = costs[:, t].argmin(axis=1)
            if previous is not None:
                keep = costs[slots, t, previous] <= costs[slots, t, best] * (1 + self.hysteresis)
                best = np.where(keep, previous, best)
            picks[t] = previous = best
        return picks
