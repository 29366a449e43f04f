"""Index sets of the MediaPipe face mesh (468 points, 478 with `refine_landmarks`), and mouth measurements.

Region sets are derived from MediaPipe's own edge lists in `face_mesh_connections`, so they cannot drift from the
model that produced the landmarks. Only a few anatomical points, and the RIGID set, are picked by hand; each such
index was checked against the edge lists (see tests/test_fitting.py) and against a real frontal portrait.

"Left" and "right" are the subject's, as in MediaPipe's names: on an unmirrored image the subject's right eye
(FACEMESH_RIGHT_EYE, outer corner 33) is on the image's left.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as _mp

Edges = Iterable[tuple[int, int]]


def _points(*edge_sets: Edges) -> np.ndarray:
    """Sorted unique vertex indices touched by the given edge sets."""
    return np.unique([index for edges in edge_sets for edge in edges for index in edge])


def _closed_contours(edges: Edges) -> list[np.ndarray]:
    """Split an edge set made of disjoint closed rings into its rings, each in polygon order.

    Every vertex of a ring has exactly two neighbours, so walking from the lowest index and never stepping back
    visits the ring in order (ready for cv2.fillPoly / polylines).
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    unvisited = set(neighbours)
    contours = []
    while unvisited:
        start = min(unvisited)
        ring, previous, current = [start], None, start
        while True:
            current, previous = min(neighbours[current] - {previous}), current
            if current == start:
                break
            ring.append(current)
        unvisited -= set(ring)
        contours.append(np.array(ring))
    return contours


# The base mesh has 468 vertices; the refined model appends 10 iris points (per eye: a centre, then 4 contour
# points; FACEMESH_IRISES lists only the contours, which is why the iris range is taken from the counts).
NUM_LANDMARKS: int = len(_points(_mp.FACEMESH_TESSELATION))
NUM_LANDMARKS_REFINED: int = int(_points(_mp.FACEMESH_IRISES).max()) + 1
IRISES: np.ndarray = np.arange(NUM_LANDMARKS, NUM_LANDMARKS_REFINED)

# Anatomical points (hand-picked, checked against the edge lists and a frontal portrait).
UPPER_LIP_INNER_MID: int = 13
LOWER_LIP_INNER_MID: int = 14
MOUTH_RIGHT_CORNER: int = 61  # outer-lip corner on the subject's right (image left)
MOUTH_LEFT_CORNER: int = 291
RIGHT_EYE_OUTER: int = 33  # lateral canthus of the subject's right eye
LEFT_EYE_OUTER: int = 263
FOREHEAD_TOP: int = 10  # top of the face-oval midline
CHIN: int = 152  # bottom of the face-oval midline
NOSE_TIP: int = 1  # MediaPipe's own "noseTip" annotation

# FACEMESH_LIPS is two disjoint closed rings: the vermilion's outer border and the inner border where the lips
# meet. The ring that holds the inner midline points 13/14 is the inner one; the other is the outer one.
_lip_rings = _closed_contours(_mp.FACEMESH_LIPS)
LIPS_INNER: np.ndarray = next(ring for ring in _lip_rings if UPPER_LIP_INNER_MID in ring)
LIPS_OUTER: np.ndarray = next(ring for ring in _lip_rings if UPPER_LIP_INNER_MID not in ring)
LIPS: np.ndarray = _points(_mp.FACEMESH_LIPS)
MOUTH: np.ndarray = LIPS

EYES: np.ndarray = _points(_mp.FACEMESH_LEFT_EYE, _mp.FACEMESH_RIGHT_EYE)
BROWS: np.ndarray = _points(_mp.FACEMESH_LEFT_EYEBROW, _mp.FACEMESH_RIGHT_EYEBROW)
FACE_OVAL: np.ndarray = _points(_mp.FACEMESH_FACE_OVAL)
NOSE: np.ndarray = _points(_mp.FACEMESH_NOSE)

# Points that move little with expression, to anchor the rigid head fit. They sit on bone or on skin held by it:
# - nose bridge and dorsum down to the tip (168, 6, 197, 195, 5, 4): nasal bone and cartilage; the tip wobbles
#   only slightly with the upper lip, and 1 (just above the subnasale) is left out for that reason;
# - forehead below the hairline (10, 151, 109, 338, 67, 297, 108, 337): frontal bone; the glabella (9, 8) is
#   left out because frowning creases it;
# - eye corners (33, 133 right; 263, 362 left): canthi are tied to the orbit, blinks move only the lids;
# - upper face oval from the temples to ear level (103, 54, 21, 162, 127, 234 right; 332, 284, 251, 389, 356,
#   454 left): temporal bone and zygomatic arch, above the jaw joint, so opening the mouth does not move them.
RIGID: np.ndarray = np.array(
    sorted(
        {168, 6, 197, 195, 5, 4}
        | {10, 151, 109, 338, 67, 297, 108, 337}
        | {33, 133, 263, 362}
        | {103, 54, 21, 162, 127, 234, 332, 284, 251, 389, 356, 454}
    )
)
# The rest of the face oval follows the mandible: it moves whenever the mouth opens.
JAW: np.ndarray = np.setdiff1d(FACE_OVAL, RIGID)

# Upper/lower inner-lip pairs facing each other across the mouth slit (mid pair and its two neighbours, read
# off the inner ring: 82-13-312 on the upper lip sit above 87-14-317 on the lower lip).
INNER_LIP_VERTICAL_PAIRS: np.ndarray = np.array([(82, 87), (UPPER_LIP_INNER_MID, LOWER_LIP_INNER_MID), (312, 317)])


def mouth_opening(landmarks: np.ndarray, pairs: np.ndarray = INNER_LIP_VERTICAL_PAIRS) -> np.ndarray:
    """Gap between the inner lips, (T, N, D) -> (T,), in the landmarks' units (D = 2 or 3); `pairs` indexes
    INNER_LIP_VERTICAL_PAIRS's points in `landmarks` (where it holds only those points).

    The mean distance of three facing inner-lip pairs around the midline: averaging three pairs steadies the
    tracker's noise, and a Euclidean distance (not a y difference) is unaffected by head roll. Always >= 0;
    about 0 with closed lips.
    """
    upper = landmarks[:, pairs[:, 0]]
    lower = landmarks[:, pairs[:, 1]]
    return np.linalg.norm(upper - lower, axis=-1).mean(axis=-1)


def mouth_width(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer mouth corners 61 and 291, (T, N, D) -> (T,), in the landmarks' units."""
    return np.linalg.norm(landmarks[:, MOUTH_LEFT_CORNER] - landmarks[:, MOUTH_RIGHT_CORNER], axis=-1)


# Per eye: upper-lid mid, lower-lid mid, outer canthus, inner canthus (subject's right eye, then left).
EYE_LID_POINTS: np.ndarray = np.array([(159, 145, RIGHT_EYE_OUTER, 133), (386, 374, LEFT_EYE_OUTER, 362)])


def eye_openings(landmarks: np.ndarray) -> np.ndarray:
    """Each eye's lid gap over its width, (T, N, D) -> (T, 2) (subject's right, left): scale-free, about
    0.25-0.3 for open eyes and under half of that in a blink."""
    upper, lower, outer, inner = (landmarks[:, EYE_LID_POINTS[:, k]] for k in range(4))
    gap = np.linalg.norm(upper - lower, axis=-1)
    return gap / np.maximum(np.linalg.norm(outer - inner, axis=-1), 1e-6)


def eye_opening(landmarks: np.ndarray) -> np.ndarray:
    """Both eyes' mean opening (see eye_openings), (T, N, D) -> (T,)."""
    return eye_openings(landmarks).mean(axis=-1)
