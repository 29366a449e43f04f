"""A vectorised scanline rasteriser for triangle meshes: which triangle covers each pixel centre.

OpenCV's fills cost a few microseconds of call overhead per triangle, which for the ~850 triangles of the face
mesh alone is most of a frame's budget, so triangles are rasterised in NumPy instead: each triangle is cut into
the pixel rows it spans, each row into the span of pixel centres inside the triangle, and the spans are expanded
into pixels; where triangles overlap, a buffer of priorities keeps the highest. Edges are hard, like
cv2.fillPoly with LINE_8: anti-aliasing would leave seams along every shared edge.

Coordinates are OpenCV fixed point (`SHIFT` fractional bits) with pixel centres at integer multiples of `ONE`.
Both the conditioning renderer (a shade per triangle) and the mesh warp (an affine map per triangle) read the
triangle index map this module makes.
"""

from __future__ import annotations

import numpy as np

# Fractional bits of the fixed-point coordinates: 1/16 px steps.
SHIFT = 4
ONE = 1 << SHIFT


class TriangleSet:
    """A fixed list of triangles over a point set, with the per-edge index arrays the rasteriser needs.

    Edge k of every triangle runs from `edge_from[k]` to `edge_to[k]` (lower vertex index first, so triangles
    sharing an edge see it in the same direction and compute its crossings identically: no cracks), with
    `edge_opposite[k]` the corner across from it.
    """

    def __init__(self, triangles: np.ndarray):
        self.corners = np.ascontiguousarray(np.sort(np.asarray(triangles, np.intp), axis=1).T)  # (3, F)
        self.edge_from = self.corners[[0, 0, 1]]
        self.edge_to = self.corners[[1, 2, 2]]
        self.edge_opposite = self.corners[[2, 1, 0]]

    def __len__(self) -> int:
        return self.corners.shape[1]

    def index_map(self, points: np.ndarray, priority: np.ndarray, size: int) -> np.ndarray:
        """(size, size) int32: the index of the triangle covering each pixel centre, -1 where none does.

        `points` (N, 2) int fixed point; `priority` (F,) a permutation of 0..F-1: where triangles overlap the
        one with the higher priority wins.
        """
        x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
        left_slope, left_offset, right_slope, right_offset = self._edge_crossings(x, y)

        corner_y = y.take(self.corners)
        first_row = np.clip(np.ceil(corner_y.min(axis=0) / ONE), 0, size).astype(np.int32)
        last_row = np.clip(np.floor(corner_y.max(axis=0) / ONE), -1, size - 1).astype(np.int32)
        heights = np.maximum(last_row - first_row + 1, 0)
        row_triangle = np.repeat(np.arange(len(heights), dtype=np.int32), heights)
        row = np.repeat(first_row - (np.cumsum(heights, dtype=np.int32) - heights), heights)
        row += np.arange(len(row), dtype=np.int32)

        # A row's span runs from the rightmost left-bounding edge to the leftmost right-bounding one (the
        # triangle is the intersection of its edges' half-planes). Pixel centres sit at multiples of ONE.
        row_y = (row * ONE).astype(np.float32)
        left = (np.take(left_slope, row_triangle, axis=1) * row_y + np.take(left_offset, row_triangle, axis=1)).max(0)
        right = (np.take(right_slope, row_triangle, axis=1) * row_y + np.take(right_offset, row_triangle, axis=1)).min(
            0
        )
        first_column = np.clip(np.ceil(left / ONE), 0, size).astype(np.int32)
        lengths = np.maximum(np.minimum(np.floor(right / ONE), size - 1) - first_column + 1, 0).astype(np.int32)

        index = np.full((size, size), -1, np.int32)
        spans = lengths > 0
        if not spans.any():
            return index
        # The priority buffer covers only the triangles' bounding box: a full-image one would cost more for a
        # face that fills a fraction of the crop.
        top, bottom = row[spans].min(), row[spans].max() + 1
        left_edge, right_edge = first_column[spans].min(), (first_column + lengths)[spans].max()
        window_width = right_edge - left_edge
        span_start = np.cumsum(lengths, dtype=np.int32) - lengths
        pixel = np.repeat((row - top) * window_width + first_column - left_edge - span_start, lengths)
        pixel += np.arange(len(pixel), dtype=np.int32)
        buffer = np.full((bottom - top) * window_width, -1, np.int32)
        np.maximum.at(buffer, pixel, np.repeat(priority.take(row_triangle), lengths))
        # Priority -1 (no triangle) picks the appended -1.
        triangle_by_priority = np.full(len(priority) + 1, -1, np.int32)
        triangle_by_priority[priority] = np.arange(len(priority), dtype=np.int32)
        index[top:bottom, left_edge:right_edge] = triangle_by_priority.take(buffer).reshape(bottom - top, -1)
        return index

    def _edge_crossings(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """Where each triangle edge crosses the row at height Y: X = slope * Y + offset, each array (3, F).

        Split by the side of the triangle the edge bounds: the left set holds slope 0, offset -inf for an edge
        that does not bound the triangle from the left (so it never wins the max), the right set likewise +inf.
        Edges parallel to the rows bound neither: the triangle's row range already stops at them. Both
        triangles sharing an edge compute its crossing from the same endpoints in the same order, so they get
        the same number, and a pixel centre on the edge falls in both rather than in neither: no cracks.
        Degenerate triangles (corners in a line) bound no area and are emptied.
        """
        start_x, start_y = x.take(self.edge_from), y.take(self.edge_from)
        dx, dy = x.take(self.edge_to) - start_x, y.take(self.edge_to) - start_y
        # The opposite corner's side of the edge line dx (Y - start_y) - dy (X - start_x) = 0 is the inside.
        side = np.sign(dx * (y.take(self.edge_opposite) - start_y) - dy * (x.take(self.edge_opposite) - start_x))
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = dx / dy
            offset = start_x - slope * start_y
        # Inside, side * (dx (Y - start_y) - dy (X - start_x)) >= 0: X is bounded from the left where side * dy < 0.
        bounds_left, bounds_right = side * dy < 0, side * dy > 0
        left_slope, right_slope = np.where(bounds_left, slope, 0.0), np.where(bounds_right, slope, 0.0)
        left_offset, right_offset = np.where(bounds_left, offset, -np.inf), np.where(bounds_right, offset, np.inf)
        left_offset[:, (side == 0).any(axis=0)] = np.inf  # degenerate: an empty span on every row
        # Single precision halves the per-row arrays; sharing triangles still round the same numbers the same way.
        return tuple(array.astype(np.float32) for array in (left_slope, left_offset, right_slope, right_offset))
