import numpy as np

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


def test_masked_median_is_the_lower_median_of_the_valid_samples():
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 256, (9, 5, 4, 3), dtype=np.uint8)
    valid = rng.random(samples.shape) < 0.6
    valid[:, 0, 0] = False  # a pixel never seen
    median, counts = masked_median(samples, valid)
    for index in np.ndindex(samples.shape[1:]):
        column = np.sort(samples[(slice(None),) + index][valid[(slice(None),) + index]])
        assert counts[index] == len(column)
        assert median[index] == (column[(len(column) - 1) // 2] if len(column) else 0)
    assert counts[0, 0].tolist() == [0, 0, 0]
