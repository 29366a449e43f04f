import numpy as np
import pytest

from amg.tracking.background import masked_median
from amg.tracking.scan import FaceScan, crop_size, crop_window, fitted_to_crop, main_face_index


def test_main_face_is_the_large_central_one():
    boxes = np.array([[0, 0, 60, 60], [150, 80, 250, 180], [400, 0, 440, 40]], np.float32)
    assert main_face_index(boxes, (500, 300)) == 1


def scan_of(frame_size, boxes: np.ndarray, every: int = 5) -> FaceScan:
    """A scan that saw one face, `boxes`, on each of its sampled frames."""
    frames = np.arange(len(boxes)) * every
    return FaceScan(frame_size, every, len(boxes), frames, np.ones(len(boxes), np.int64), boxes)


def test_crop_window_frames_head_and_shoulders_inside_the_frame():
    boxes = np.tile(np.array([[900, 300, 1100, 500]], np.float32), (10, 1))  # 200 px face in a 1920x1080 frame
    scan = scan_of((1920, 1080), boxes)
    win = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=1024)
    assert win.side == 640
    assert win.x0 == 1000 - 320 and win.y0 == int(round(400 - 0.38 * 640))
    # A frame smaller than the wanted window: the window shrinks to fit and stays inside.
    small = scan_of((256, 256), np.tile(np.array([[78, 60, 178, 160]], np.float32), (10, 1)))
    win = crop_window(small, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=512)
    assert (win.x0, win.y0, win.side) == (0, 0, 256)


def test_a_window_with_more_pixels_than_the_crop_keeps_narrows_toward_the_head():
    """720p half-body: a 225-px face wants a 720-px window, more than a 512-px crop keeps; the window narrows to
    2.4 face heights (540 px), not below, and the crop then keeps the face 1:1 up to its 512-px cap."""
    scan = scan_of((1280, 720), np.tile(np.array([[528, 150, 753, 375]], np.float32), (10, 1)))
    assert crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=2048).side == 720
    win = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=512)
    assert win.side == 540 and win.y0 == 0  # the face at the middle of 540 px would put the top at -7.5: clipped
    assert crop_size(win.side, 0, 512) == 512
    assert crop_size(win.side, 0, 1024) == 512  # the window's own side, in steps of 64
    assert crop_size(win.side, 256, 512) == 256  # a size that is set wins
    assert crop_size(200, 0, 512) == 256  # a small window is resampled up to 256, as every crop was
    # A face that travels across the frame keeps a window that covers its travel.
    travel = scan_of((1280, 720), np.array([[128 + 60 * i, 150, 353 + 60 * i, 375] for i in range(10)], np.float32))
    assert crop_window(travel, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=512).side == 720


def test_a_window_a_little_wider_than_its_crop_narrows_to_hold_the_source_pixels_1_to_1():
    """obama_halfbody_34s: a 225-px face that travels 62 px wants a 557-px window; its crop is 512 px, so the
    window narrows to 512 around the same face (1:1); a window more than 10% wider keeps its side (resampled)."""
    boxes = np.array([[497 + 62 * i / 9, 150, 722 + 62 * i / 9, 375] for i in range(10)], np.float32)
    scan = scan_of((1280, 720), boxes)
    win = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=512)
    assert 540 < win.side < 563 and crop_size(win.side, 0, 512) == 512
    fitted = fitted_to_crop(win, scan, 3.2, 0.38, 512)
    assert fitted.side == 512
    assert abs((fitted.x0 + 256) - (win.x0 + win.side / 2)) <= 1  # the same centre
    assert fitted.y0 == int(round(262.5 - 512 / 2))  # narrowed from 720 px: the face at the middle, not at 0.38
    wide = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=2048)
    assert fitted_to_crop(wide, scan, 3.2, 0.38, 512) == wide  # 720 px: 41% wider than its crop
    assert fitted_to_crop(fitted, scan, 3.2, 0.38, 512) == fitted  # already 1:1


def test_a_narrowed_window_keeps_the_room_above_the_face():
    """A 1080x1920 portrait with a 290-px face (latentsync_demo2): the 928-px window it wants narrows to 696 px
    for a 512-px crop. It loses its bottom, not its top: the face moves to the window's middle, and the room above
    the face box stays within 3% of the unnarrowed window's (0.70 face heights; at 0.38 of the narrowed side it
    was 0.41, and the hair was cut)."""
    scan = scan_of((1080, 1920), np.tile(np.array([[400, 500, 690, 790]], np.float32), (10, 1)))
    wide = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=2048)
    narrow = crop_window(scan, scale=3.2, face_center_y=0.38, min_scale=2.4, max_side=512)
    assert (wide.side, wide.y0) == (928, int(round(645 - 0.38 * 928)))
    assert (narrow.side, narrow.y0) == (696, 645 - 696 // 2)
    assert 500 - narrow.y0 >= 0.97 * (500 - wide.y0)
    assert narrow.y0 + narrow.side >= 790 + 0.6 * 290  # the chin keeps 0.6 face heights below it


@pytest.mark.parametrize(
    ("seen", "span"),
    [
        ("face all along", (0, 100)),
        ("a face missed at the ends and for a second inside", (0, 100)),
        ("the face leaves half way", (0, 51)),  # last seen on frame 50
        ("the face comes late", (40, 100)),
        ("the face leaves for long and comes back for longer", (50, 100)),
    ],
)
def test_the_face_span_bridges_short_gaps_and_cuts_at_long_ones(seen, span):
    """100 frames scanned every 5th; the face may be missing for 20 frames at a stretch (and the span ends on the
    last frame it was seen on, unless that is within 20 frames of the video's end)."""
    sampled = np.arange(0, 100, 5)
    with_face = {
        "face all along": sampled,
        "a face missed at the ends and for a second inside": sampled[
            (sampled > 10) & (sampled < 90) & (sampled % 30 != 0)
        ],
        "the face leaves half way": sampled[sampled <= 50],
        "the face comes late": sampled[sampled >= 40],
        "the face leaves for long and comes back for longer": sampled[(sampled <= 20) | (sampled >= 50)],
    }[seen]
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (len(with_face), 1))
    scan = FaceScan((64, 64), 5, len(sampled), with_face, np.ones(len(with_face), np.int64), boxes)
    found = scan.face_span(100, max_gap=20)
    assert (found.start, found.stop) == span
    inside = scan.within(found)
    assert inside.n_with_face == len([f for f in with_face if span[0] <= f < span[1]])


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
