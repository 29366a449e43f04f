"""Stage 6, the face refiner: steady crop boxes, seamless colour-matched paste, the refiner network."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from amg.enhance.crop import FacePaster, crop_face, face_crop_boxes, refine_size
from amg.enhance.networks import Refiner
from amg.tracking import topology
from amg.tracking.topology import NUM_LANDMARKS_REFINED


def _moving_face(n: int = 60, noise: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of a face oval swaying smoothly, with tracker-like noise; and the true centre per frame."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    centre = np.stack([256 + 20 * np.sin(t / 12), 250 + 8 * np.cos(t / 9)], axis=1)
    angles = np.linspace(0, 2 * np.pi, len(topology.FACE_OVAL), endpoint=False)
    oval = np.stack([80 * np.cos(angles), 100 * np.sin(angles)], axis=1)
    landmarks = np.zeros((n, NUM_LANDMARKS_REFINED, 3))
    landmarks[:, :, :2] = centre[:, None]
    landmarks[:, topology.FACE_OVAL, :2] += oval[None] + rng.normal(0, noise, (n, len(oval), 2))
    return landmarks, centre


def test_crop_boxes_keep_one_side_follow_the_face_and_smooth_the_tracker_noise():
    landmarks, centre = _moving_face()
    boxes = face_crop_boxes(landmarks, source_size=512, size=256, margin=0.1, smooth_window=9)
    assert boxes.shape == (60, 3)
    assert np.ptp(boxes[:, 2]) == 0  # one side for the whole sequence: the face never breathes
    assert boxes[0, 2] == pytest.approx(200 * 1.2 / 2, rel=0.05)  # face extent 200 px at 512, +10 % per side
    assert np.abs(boxes[:, :2] - centre / 2).max() < 1.5  # follows the sway (px at 256)
    raw = (landmarks[:, topology.FACE_OVAL, :2].min(1) + landmarks[:, topology.FACE_OVAL, :2].max(1)) / 4
    shake = lambda c: np.abs(np.diff(c, 2, axis=0)).mean()  # noqa: E731
    assert shake(boxes[:, :2]) < 0.3 * shake(raw)


def test_crop_boxes_of_a_short_sequence():
    landmarks, _ = _moving_face(n=2)
    assert face_crop_boxes(landmarks, 512, 256, 0.1, 9).shape == (2, 3)


def test_refine_size_is_scaled_and_a_multiple_of_8():
    assert refine_size(101.0, 2.0) == 200 and refine_size(3.0, 2.0) == 8


def test_crop_face_resamples_the_box():
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[32:96, 32:96] = 200  # a square filling the middle two thirds of the box
    box = np.array([64.0, 64.0, 96.0])
    crop = crop_face(frame, box, 192)  # 2x: the square spans crop pixels 32..160
    assert crop.shape == (192, 192, 3)
    assert crop[36:156, 36:156].min() > 190 and crop[:28, :28].max() < 10
    larger = crop_face(cv2.resize(frame, (256, 256), interpolation=cv2.INTER_NEAREST), box, 192, 2.0)
    assert np.abs(larger.astype(int) - crop.astype(int)).mean() < 3  # same box, taken from a 2x frame


@pytest.mark.parametrize("upscale", [1, 2])
def test_paste_has_no_seam_and_cancels_a_colour_shift(upscale):
    y, x = np.mgrid[0:128, 0:128]
    frame = np.stack([x + 40, y + 60, (x + y) // 2 + 30], axis=-1).astype(np.uint8)  # smooth gradients
    box = np.array([60.5, 66.25, 70.0])
    paster = FacePaster(out_size=96, feather=0.15, upscale=upscale)
    base = crop_face(frame, box, 96)
    detail = np.random.default_rng(0).normal(0, 12, base.shape)
    refined = np.clip(base.astype(float) + 25 + detail, 0, 255).astype(np.uint8)  # brighter, with texture
    out = paster(frame, refined, base, box)
    assert out.shape == (128 * upscale, 128 * upscale, 3)
    reference = (
        frame if upscale == 1 else cv2.resize(frame, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    )
    diff = np.abs(out.astype(int) - reference.astype(int)).mean(axis=-1)
    cx, cy, side = box * upscale
    half = side / 2
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    outside = (np.abs(xx - cx) > half + 1) | (np.abs(yy - cy) > half + 1)
    edge = ~outside & ((np.abs(xx - cx) > half - 2) | (np.abs(yy - cy) > half - 2))
    assert diff[outside].max() == 0  # nothing outside the box changes
    assert diff[edge].mean() < 1.5  # the box's edge matches its surroundings: no seam
    inside = (np.abs(xx - cx) < half * 0.5) & (np.abs(yy - cy) < half * 0.5)
    assert abs((out[inside].astype(int) - reference[inside].astype(int)).mean()) < 3  # the +25 shift is gone
    assert diff[inside].mean() > 4  # while the refined texture is kept


def test_refiner_starts_as_the_identity_and_keeps_the_shape():
    net = Refiner(ngf=8, n_blocks=1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(net(x), x)
    torch.nn.init.normal_(net.to_detail[1].weight, std=0.1)
    y = net(x)
    assert y.shape == x.shape and y.abs().max() <= 1 and not torch.equal(y, x)


def test_refiner_in_onnx_runtime_computes_what_pytorch_computes():
    from amg.core.onnx_runtime import OnnxModel

    torch.manual_seed(0)
    net = Refiner(ngf=8, n_blocks=1).eval()
    torch.nn.init.normal_(net.to_detail[1].weight, std=0.1)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(OnnxModel.exported(net, x[:1])(x), expected, atol=1e-4, rtol=0)
