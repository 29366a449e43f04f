"""Which bank frames the generator warps for each generated frame: retrieval by head pose, mouth shape and
eye state, kept steady over time.

The warp (amg.conditioning.warp) moves pixels well but cannot invent what the source frame does not show: teeth
behind closed lips, a lid over an open eye, the collar and shoulders as they sit for another head pose. So each
generated frame gets one candidate per *slot*:

    pose    nearest in head pose (rotation, translation and scale): the warp fixes the expression, and a frame
            of the same pose has the hair, ears, collar and shoulders where the target has them (on
            obama_clip2's held-out tail its warp errs 35% less than the warp of the frame nearest in all
            landmarks, whose pixel distances mix pose with expression);
    mouth   nearest in lip shape (lips around their centre, in units of the eye distance): teeth and lips as
            the target mouth shows them;
    eyes    nearest in both eyes' lid opening: blinks and wide eyes;
    pose2   (with 4 candidates) the next nearest head pose at least POSE2_SEPARATION frames from the first:
            another take on what the first one's warp gets wrong.

The mouth and eye slots add a share of the pose distance, so that they do not come from a very different
head pose. Each distance is divided by the bank's own spread of that descriptor, so the shares mean the same
for every avatar. A slot keeps its previous candidate while that one costs at most (1 + hysteresis) times the
best: texture then changes only when a clearly better frame exists, not at every small landmark change. The
mouth slot has a hysteresis of its own, smaller: a speaking mouth changes shape every few frames, and a mouth
candidate held until one twice as close turns up still shows the closed lips of a moment ago where the target
parts them, so the teeth go missing. In training, bank frames within `exclusion` frames of the target are ruled
out (else the answer would be copied).
"""

from __future__ import annotations

import numpy as np

from amg.tracking import topology

SLOTS = ("pose", "mouth", "eyes", "pose2")
# The second pose candidate comes from at least this many frames away from the first (another moment, so
# another take on the hair, collar and shoulders where the first one's warp errs).
POSE2_SEPARATION = 25
# Share of the (normalised) pose distance added to the mouth and eye slots' costs.
POSE_SHARE = 0.5
# Cost added to excluded bank frames: finite, so that if every frame is excluded the least bad one still wins.
_EXCLUDED = 1e9


def squared_distances(query: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(Q, D) and (M, D) → (Q, M) squared Euclidean distances, without the (Q, M, D) intermediate."""
    q, b = query.astype(np.float64), bank.astype(np.float64)
    distances = (q**2).sum(axis=1)[:, None] - 2 * q @ b.T + (b**2).sum(axis=1)[None]
    return np.maximum(distances, 0.0)


def head_pose_features(rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(T, 6): rotation vector, image-plane translation and log scale: what places the head in the crop."""
    return np.concatenate([rotation, translation[:, :2], np.log(scale)[:, None]], axis=1).astype(np.float64)


def descriptors(landmarks: np.ndarray, poses: np.ndarray) -> dict[str, np.ndarray]:
    """(T, N, 3) crop-pixel landmarks and (T, 6) head_pose_features → per slot a (T, D) descriptor."""
    points = landmarks[:, : topology.NUM_LANDMARKS, :2].astype(np.float64)
    eye_distance = np.linalg.norm(points[:, topology.RIGHT_EYE_OUTER] - points[:, topology.LEFT_EYE_OUTER], axis=-1)
    lips = points[:, topology.LIPS]
    lips = (lips - lips.mean(axis=1, keepdims=True)) / np.maximum(eye_distance, 1e-6)[:, None, None]
    return {"pose": poses, "mouth": lips.reshape(len(lips), -1), "eyes": topology.eye_openings(points)}


class CandidatePicker:
    """Retrieval over a bank of frames (their landmarks, head poses and frame numbers)."""

    def __init__(
        self,
        bank_landmarks: np.ndarray,
        bank_poses: np.ndarray,
        bank_index: np.ndarray,
        n_candidates: int,
        hysteresis: float,
        mouth_hysteresis: float | None = None,
    ):
        """`mouth_hysteresis`: the mouth slot's (None: `hysteresis`, as every other slot's)."""
        if not 1 <= n_candidates <= len(SLOTS):
            raise ValueError(f"n_candidates must be 1..{len(SLOTS)}, got {n_candidates}")
        self.slots = SLOTS[:n_candidates]
        self.bank_index = np.asarray(bank_index)
        mouth = hysteresis if mouth_hysteresis is None else mouth_hysteresis
        self.hysteresis = np.array([mouth if slot == "mouth" else hysteresis for slot in self.slots])
        self.bank = descriptors(bank_landmarks, bank_poses)
        # Per dimension for the pose (radians and pixels do not compare), per descriptor for the point sets:
        # distances in units of the avatar's own spread.
        self.pose_std = self.bank["pose"].std(axis=0) + 1e-6
        self.bank["pose"] = self.bank["pose"] / self.pose_std
        self.spread = {
            k: max(float(((v - v.mean(axis=0)) ** 2).sum(axis=1).mean()), 1e-12) for k, v in self.bank.items()
        }

    def costs(self, landmarks: np.ndarray, poses: np.ndarray) -> np.ndarray:
        """(n, N, 3) target landmarks, (n, 6) poses → (K, n, M) cost of each bank frame for each slot."""
        query = descriptors(landmarks, poses)
        query["pose"] = query["pose"] / self.pose_std
        d = {k: squared_distances(query[k], self.bank[k]) / self.spread[k] for k in self.bank}
        slot_cost = {
            "pose": d["pose"],
            "pose2": d["pose"],
            "mouth": d["mouth"] + POSE_SHARE * d["pose"],
            "eyes": d["eyes"] + POSE_SHARE * d["pose"],
        }
        return np.stack([slot_cost[s] for s in self.slots])

    def pick(
        self,
        landmarks: np.ndarray,
        poses: np.ndarray,
        frame_index: np.ndarray | None = None,
        exclusion: int = 0,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bank entries (n, K) for n consecutive target frames; `previous` (K,) are the picks of the frame
        before (carried across chunks, so a long render switches texture as rarely as a short one)."""
        costs = self.costs(landmarks, poses)
        if frame_index is not None and exclusion > 0:
            near = np.abs(np.asarray(frame_index)[:, None] - self.bank_index[None]) < exclusion
            costs = costs + _EXCLUDED * near[None]
        slots = np.arange(len(self.slots))
        picks = np.empty((costs.shape[1], len(self.slots)), np.intp)
        second = self.slots.index("pose2") if "pose2" in self.slots else None
        for t in range(costs.shape[1]):  # sequential by nature: each frame's choice depends on the last
            frame_costs = costs[:, t]
            best = frame_costs.argmin(axis=1)
            if previous is not None:
                keep = frame_costs[slots, previous] <= frame_costs[slots, best] * (1 + self.hysteresis)
                best = np.where(keep, previous, best)
            if second is not None:  # away in time from the pose slot's final choice
                too_close = np.abs(self.bank_index - self.bank_index[best[0]]) < POSE2_SEPARATION
                frame_costs = frame_costs.copy()
                frame_costs[second] += _EXCLUDED * too_close
                best[second] = frame_costs[second].argmin()
                if previous is not None and frame_costs[second, previous[second]] <= frame_costs[
                    second, best[second]
                ] * (1 + self.hysteresis[second]):
                    best[second] = previous[second]
            picks[t] = previous = best
        return picks
