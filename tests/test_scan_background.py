import numpy as np
import pytest

from amg.tracking.background import masked_median
from amg.tracking.scan import FaceScan, crop_window, main_face_index


def test_main_face_is_the_large_central_one():
    boxes = np.array([[0, 0, 60, 60], [150, 80, 250, 180], [400, 0, 440, 40]], np.float32)
    assert main_face_index(boxes, (500, 300)) == 1


def test_crop_window_frames_head_and_shoulders_inside_the_frame():
    boxes = np.tile(np.array([[900, 300, 1100, 500]], np.float32), (10, 1))  # 200 px face in a 1920x1080 frame
    scan = FaceScan((1920, 1080), 10, 10, 0, boxes)
    win = crop_window(scan, scale=3.2, face_center_y=0.38)
    assert win.side == 640
    assert win.x0 == 1000 - 320 and win.y0 == int(round(400 - 0.38 * 640))
    # A frame smaller than the wanted window: the window shrinks to fit and stays inside.
    small = FaceScan((256, 256), 10, 10, 0, np.tile(np.array([[78, 60, 178, 160]], np.float32), (10, 1)))
    win = crop_window(small, scale=3.2, face_center_y=0.38)
    assert (win.x0, win.y0, win.side) == (0, 0, 256)


def test_masked_median_matches_numpy_nanmedian():
    rng = np.random.default_rng(1)
    stack = rng.random((9, 5, 4, 3)).astype(np.float32)
    mask = rng.random(stack.shape) < 0.4
    mask[:, 0, 0] = True  # a pixel never seen
    reference = np.where(mask, np.nan, stack)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(reference, axis=0)
    got = masked_median(np.where(mask, np.inf, stack))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.isnan(got[0, 0]).all()
