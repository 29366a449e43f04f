"""The face box at the source's resolution (amg.gan.native): the detail finer than the generator's crop, taken from
the candidates' own frames where they agree with the generated picture."""

import cv2
import numpy as np
import pytest

from amg.core.images import resized
from amg.gan.native import Box, NativeDetail, cut, face_boxes

SIDE, SIZE = 96, 48  # the window at the source's resolution, the generator's crop


def texture(seed: int = 0) -> np.ndarray:
    """(SIDE, SIDE, 3) uint8 with detail at every scale down to the pixel (skin, hair, teeth have it)."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (SIDE, SIDE, 3)).astype(np.float32), (0, 0), 0.6)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (SIDE, SIDE, 3)).astype(np.float32), (0, 0), 6)
    return np.clip(128 + 20 * fine / fine.std() + 40 * coarse / coarse.std(), 0, 255).astype(np.uint8)


def identity_maps(shift: float = 0.0, down: float = 0.0) -> np.ndarray:
    """(1, 1, SIZE, SIZE, 2): a warp that reads each crop pixel `shift` crop pixels to its right (`down` below)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return np.stack([xs + shift, ys + down], axis=-1)[None, None]


def face(low: float = 24, high: float = 72) -> np.ndarray:
    """(1, 478, 3) landmarks in window pixels whose face spans [low, high] both ways (its box, widened: 14-82)."""
    points = np.zeros((1, 478, 3))
    points[0, :, :2] = np.linspace(low, high, 478)[:, None]
    points[0, ::2, 0] = points[0, ::-2, 0]
    return points


def detail_over(bank: np.ndarray) -> NativeDetail:
    return NativeDetail({0: (Box(0, 0, SIDE, SIDE), bank)}, SIDE, SIZE, landmark_size=SIDE)


def prepared(detail: NativeDetail, shift: float = 0.0, entry: int = 0, down: float = 0.0):
    return detail.prepare(face(), identity_maps(shift, down), np.full((1, 1), entry))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-3)))


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def inner(image: np.ndarray) -> np.ndarray:
    """The box's middle, past its fade."""
    return image[28:68, 28:68]


def test_a_crop_that_matches_its_candidate_gets_the_source_detail_back():
    real = texture()
    crop = resized(real, (SIZE, SIZE))  # what a perfect generator makes at the crop's size
    detail = detail_over(real)
    composed = detail.compose(crop, prepared(detail), 0)
    enlarged = resized(crop, (SIDE, SIDE))
    assert composed.shape == (SIDE, SIDE, 3)
    assert psnr(inner(composed), inner(real)) > psnr(inner(enlarged), inner(real)) + 8
    assert sharpness(inner(composed)) / sharpness(inner(real)) > 0.9
    assert sharpness(inner(enlarged)) / sharpness(inner(real)) < 0.5
    # Outside the box the window is the enlarged crop, and the detail fades in towards the box's middle.
    assert np.array_equal(composed[:14], enlarged[:14])
    assert (
        np.abs(composed[17, 40:56].astype(int) - real[17, 40:56]).mean()
        > np.abs(composed[40, 40:56].astype(int) - real[40, 40:56]).mean()
    )


def waves(shift: float, seed: int = 3) -> np.ndarray:
    """(SIDE, SIDE, 3) uint8: a sum of plane waves, coarse and finer than the crop holds (0.28-0.45 cycles a pixel), sampled with every
    pixel moved `shift` pixels to the right and down: a picture that exists between the pixels too."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    image = np.full((SIDE, SIDE, 3), 128.0)
    for low, high, amplitude in ((0.005, 0.04, 12.0), (0.28, 0.45, 3.0)):
        for _ in range(24):
            f = rng.uniform(low, high) * np.exp(2j * np.pi * rng.uniform())
            phase = rng.uniform(0, 2 * np.pi, 3)
            image += amplitude * np.cos(2 * np.pi * (f.real * (xs - shift) + f.imag * (ys - shift))[..., None] + phase)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("compensated", [True, False])
def test_the_detail_keeps_its_finest_band_through_warps_that_land_between_pixels(compensated, monkeypatch):
    """The face moved by a fraction of a source pixel each way (quarter steps), the candidate read by a warp that
    says so:
    bicubic resampling alone loses a tenth of these faces' sharpness on average (a third at a half pixel);
    compensated, the face keeps about the real one's (amg.gan.native.BICUBIC_COMPENSATION)."""
    from amg.gan import native

    if not compensated:
        monkeypatch.setattr(native, "BICUBIC_COMPENSATION", np.array([0, 0, 1, 0, 0], np.float32))
    bank = waves(0.0)
    detail = detail_over(bank)
    ratios = []
    for shift in (0.0, 0.25, 0.5, 0.75):
        real = waves(shift)
        moved = -shift * SIZE / SIDE
        composed = detail.compose(resized(real, (SIZE, SIZE)), prepared(detail, moved, down=moved), 0)
        ratios.append(sharpness(inner(composed)) / sharpness(inner(real)))
    if compensated:
        assert 0.95 < np.mean(ratios) < 1.15
    else:
        assert np.mean(ratios) < 0.92


def test_the_warp_moves_the_detail_with_the_candidate():
    """A candidate 1.5 crop pixels (3 source pixels) left of the target, and the warp that says so: the detail
    lands where the target's is."""
    real = texture(1)
    shifted = np.roll(real, -3, axis=1)  # the bank frame: the target moved left by 3 source pixels
    crop = resized(real, (SIZE, SIZE))
    detail = detail_over(shifted)
    composed = detail.compose(crop, prepared(detail, -1.5), 0)
    unwarped = detail.compose(crop, prepared(detail, 0.0), 0)
    assert psnr(inner(composed), inner(real)) > psnr(inner(resized(crop, (SIDE, SIDE))), inner(real)) + 5
    # Read unmoved, the shifted candidate disagrees with the crop and gives (nearly) nothing.
    assert psnr(inner(composed), inner(real)) > psnr(inner(unwarped), inner(real)) + 6


def test_no_detail_where_the_generated_picture_differs_from_every_candidate_nor_from_unknown_frames():
    real = texture(2)
    crop = resized(real, (SIZE, SIZE))
    crop[:, : SIZE // 2] = 10  # the generator made something no candidate shows: a dark left half
    detail = detail_over(real)
    composed = detail.compose(crop, prepared(detail), 0)
    enlarged = resized(crop, (SIDE, SIDE))
    assert np.abs(composed[20:76, 20:40].astype(int) - enlarged[20:76, 20:40]).max() <= 1
    assert np.abs(composed[20:76, 60:76].astype(int) - enlarged[20:76, 60:76]).mean() > 3
    unknown = detail.compose(crop, prepared(detail, entry=7), 0)
    assert np.array_equal(unknown, enlarged)


def test_threads_sharing_one_detail_keep_its_cache_bounded_and_whole():
    """A service's render jobs and live sessions share a loaded avatar's detail: many threads asking for bank
    entries at once never fail, each gets its entry's parts, and the cache stays within CACHED entries."""
    from concurrent.futures import ThreadPoolExecutor

    bank = {entry: (Box(0, 0, SIDE, SIDE), texture(entry)) for entry in range(40)}
    detail = NativeDetail(bank, SIDE, SIZE, landmark_size=SIDE)

    def ask(entry: int) -> bool:
        box, band, low = detail._parts(entry)
        return band.shape == (SIDE, SIDE, 3) and low.shape == (SIDE, SIDE)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, [i % 40 for i in range(2000)]))
    assert len(detail.parts) <= NativeDetail.CACHED


def test_the_boxes_hold_each_face_and_stay_in_the_window(tracked):
    landmarks, _ = tracked  # crop pixels of a 256-px crop
    boxes = face_boxes(landmarks, 256, 512, 0.2)
    wider = face_boxes(landmarks, 256, 512, 0.2, extra=30)
    for box, outer, points in zip(boxes, wider, landmarks[:, :468, :2] * 2):
        assert box.x0 <= points[:, 0].min() and points[:, 0].max() <= box.x1
        assert box.y0 <= points[:, 1].min() and points[:, 1].max() <= box.y1
        assert 0 <= outer.x0 <= box.x0 and box.x1 <= outer.x1 <= 512
        assert 0 <= outer.y0 <= box.y0 and box.y1 <= outer.y1 <= 512


def test_a_cut_past_the_frame_repeats_its_edge():
    frame = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    part = cut(frame, Box(-5, 2, 15, 22), Box(0, 0, 10, 20))
    assert part.shape == (20, 10, 3)
    assert np.array_equal(part[:, 5:], np.pad(frame[2:20, 0:5], ((0, 2), (0, 0), (0, 0)), "edge"))
    assert np.array_equal(part[:, 0], part[:, 5])


@pytest.mark.parametrize("side, expected", [(256, True), (68, False)])
def test_only_a_window_larger_than_the_crop_gets_detail(side, expected, tmp_path, monkeypatch):
    from amg.gan import native

    class FakeTracks:
        window = np.array([0, 0, side])
        first_frame = 0

    monkeypatch.setattr(native.Tracks, "load", staticmethod(lambda path: FakeTracks))

    class Layout:
        def tracks(self, name):
            return tmp_path / "tracks.npz"

    class Refs:
        frames = np.zeros((2, 64, 64, 3), np.uint8)
        landmarks = np.full((2, 478, 3), 32.0)
        landmarks[:, :, :2] += np.linspace(-10, 10, 478)[None, :, None]
        index = np.array([3, 9])
        source_size = 64

    bank = NativeDetail.bank(Layout(), "avatar", Refs())
    assert (bank is not None) == expected
    if expected:  # the bank keeps the candidates' own frames (the video's 3 and 9), each its face's box
        assert sorted(bank.index) == [3, 9]
        detail = bank.make({3: np.zeros((40, 40, 3), np.uint8), 9: np.zeros((40, 40, 3), np.uint8)})
        assert sorted(detail.crops) == [0, 1] and detail.side == side


def test_a_trained_avatar_renders_its_face_box_at_the_source_resolution(first_run):
    """first_run's avatar: a 256-px window generated at 64 px. Its own training frames replayed (each one's
    candidates kept 25 frames away, as in training): the frames come out at the window's side, sharper in the
    face than the crop enlarged, and the same as the enlarged crop outside the face box."""
    from amg.gan.inference import AvatarGenerator
    from amg.motion.tracks import tracked_motion
    from amg.tracking.tracks import Tracks

    layout, name, *_ = first_run
    generator = AvatarGenerator(layout, name)
    detail = generator.native_detail(layout, name)
    assert detail is not None and detail.crops
    assert generator.native_detail(layout, name) is detail  # kept with the loaded generator
    tracks = Tracks.load(layout.tracks(name))
    frames = np.arange(100, 112)
    motion = tracked_motion(tracks, slice(100, 112))
    made = list(generator.frames(motion, 8, frames, exclusion=25, detail=detail))
    crops = list(generator.frames(motion, 8, frames, exclusion=25))
    assert [f.shape for f in made] == [(256, 256, 3)] * len(frames)
    boxes = face_boxes(tracks.landmarks[frames], tracks.size, 256, 0.0)
    gains = []
    for frame, crop, box in zip(made, crops, boxes):
        enlarged = resized(crop, (256, 256))
        face = (slice(box.y0, box.y1), slice(box.x0, box.x1))
        gains.append(sharpness(frame[face]) / sharpness(enlarged[face]))
        outside = np.ones((256, 256), bool)
        outside[max(box.y0 - 60, 0) : box.y1 + 60, max(box.x0 - 60, 0) : box.x1 + 60] = False
        assert np.array_equal(frame[outside], enlarged[outside])
    assert np.median(gains) > 1.5


def test_a_renders_banks_are_decoded_once_together_and_kept_with_the_generator(first_run, monkeypatch):
    """The backdrops and the face boxes at the source's resolution come from one pass over the avatar video, at
    the first source-framed render; the next render (a service's next job, a live session) decodes nothing."""
    from amg.gan import inference
    from amg.gan.inference import AvatarGenerator

    layout, name, *_ = first_run
    passes = []
    decode = inference.iter_frames
    monkeypatch.setattr(inference, "iter_frames", lambda *args: passes.append(args) or decode(*args))
    generator = AvatarGenerator(layout, name)
    framing, detail = generator.source_banks(layout, name, 0.1)
    assert len(passes) == 1 and detail is not None and detail.crops
    assert framing.size == (256, 256) and not framing.frames  # a 256-px source: the window is the frame
    again, again_detail = generator.source_banks(layout, name, 0.1)
    assert again is framing and again_detail is detail and generator.native_detail(layout, name) is detail
    again, no_detail = generator.source_banks(layout, name, 0.1, detail=False)
    assert again is framing and no_detail is None and len(passes) == 1
