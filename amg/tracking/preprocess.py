"""Stage 1, `amg preprocess`: an avatar video → crop, tracks, expression basis, matte, background plate.

    scan     face detection on sampled frames: is there one usable face, in which span of the video (one whose
             speaker walks out half way is made of the part before); the fixed crop window
    capture  per frame: face mesh, body pose (every k-th frame), person matte; the cropped 25 fps video;
             the background plate from the pixels outside the matte on sampled frames
    fit      the avatar's neutral face, rigid head pose, PCA expression basis; gap filling and smoothing
    torso    the torso registered to a reference frame (amg.tracking.torso): body points that follow it
    preview  tracking_preview.mp4

Outputs live in `Layout.preprocess_dir(NAME)`, each written atomically. The expensive capture pass is cached
by the options that affect it; a re-run with an unchanged config skips everything (`force` redoes it all).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from amg.config import PreprocessConfig, read_saved_config, save_config
from amg.core.concurrency import prefetch
from amg.core.errors import DamagedFileError, MediaError, TrackingError
from amg.core.fsutil import atomic_path, write_text
from amg.core.layout import Layout
from amg.media import VideoWriter, iter_frames, load_audio, probe_video, write_wav
from amg.tracking import fitting, smoothing, topology
from amg.tracking.capture import RawTracks, StageTimer, capture
from amg.tracking.preview import draw_tracks
from amg.tracking.scan import (
    CropWindow,
    FaceScan,
    check_faces,
    crop_size,
    crop_window,
    fitted_to_crop,
    scan_faces,
)
from amg.tracking.torso import register_torso, torso_body
from amg.tracking.tracks import Tracks

log = logging.getLogger(__name__)

# Below two seconds there is too little to fit an expression basis or to train anything on.
MIN_FRAMES = 50
# The face may be missing this long at a stretch (a turn of the head, a hand before it): tracked through and
# interpolated. A longer stretch without it cuts the video: the avatar is made of the longest part with the face
# (a held-out tail without it would measure nothing, and the generator would learn empty frames).
MAX_FACE_GAP_S = 2.0

# Options that change what the capture pass writes; the others only change the cheap steps after it.
CAPTURE_OPTIONS = (
    "fps",
    "sample_rate",
    "size",
    "track_size",
    "refine_landmarks",
    "max_size",
    "crop_scale",
    "min_crop_scale",
    "crop_face_center_y",
    "scan_every",
    "min_face_fraction",
    "pose_every",
    "pose_size",
    "background_samples",
    "matte_threshold",
)


def preprocess(layout: Layout, name: str, cfg: PreprocessConfig, force: bool = False) -> dict:
    """Run stage 1 for video `name` (skipping cached work unless `force`); return the report."""
    report_path = layout.preprocess_report(name)
    saved = read_saved_config(PreprocessConfig, layout.preprocess_config(name))
    # The tracking preview is a picture of the tracks, not part of them: asking for it (or not) again redoes nothing.
    if not force and saved is not None and replace(saved, preview=cfg.preview) == cfg and _outputs_exist(layout, name):
        if cfg.preview and not layout.tracking_preview(name).is_file():
            write_preview(layout, name, Tracks.load(layout.tracks(name)), cfg)
        log.info("Video %r is already preprocessed with this config (use --force to redo it).", name)
        return json.loads(report_path.read_text())

    source = layout.video_source(name)
    info = probe_video(source)
    n_frames = info.n_frames(cfg.fps)
    _check_length(n_frames, cfg, name)
    timer = StageTimer()
    started = time.perf_counter()

    raw = _cached_capture(layout, name, cfg, force)
    if raw is None:
        scan = timer.call("scan", scan_faces, prefetch(iter_frames(source, cfg.fps)), cfg.scan_every)
        span = _face_span(scan, n_frames, cfg, name)
        scan = scan.within(span)
        check_faces(scan, cfg.min_face_fraction, name)
        samples = _samples_of(span, n_frames, cfg)
        audio = _extract_audio(source, info.has_audio, cfg, layout.audio_wav(name), name, samples)
        window = crop_window(scan, cfg.crop_scale, cfg.crop_face_center_y, cfg.min_crop_scale, cfg.size or cfg.max_size)
        sized = replace(cfg, size=crop_size(window.side, cfg.size, cfg.max_size))
        window = fitted_to_crop(window, scan, cfg.crop_scale, cfg.crop_face_center_y, sized.size)
        face_centre = _face_centre_in_crop(scan, window, sized.size)
        raw = capture(
            prefetch(timer.timed("decode", islice(iter_frames(source, cfg.fps), span.start, span.stop))),
            span.stop - span.start,
            window,
            face_centre,
            sized,
            layout.frames_video(name),
            layout.matte_video(name),
            audio,
            timer,
        )
        raw = replace(raw, first_frame=span.start)
        _check_tracked_fraction(raw, cfg, name)
        _save_capture(raw, cfg, layout.raw_tracks(name))

    fit_start = time.perf_counter()
    tracks, model, fit_stats = fit_tracks(raw, cfg)
    timer.seconds["fitting"] += time.perf_counter() - fit_start
    torso = timer.call("torso", register_body, layout, name, tracks, raw, cfg)
    tracks.save(layout.tracks(name))
    model.save(layout.face_model(name))

    _write_png(layout.background(name), raw.background)

    if cfg.preview:
        preview_start = time.perf_counter()
        write_preview(layout, name, tracks, cfg)
        timer.seconds["preview"] += time.perf_counter() - preview_start

    report = {
        "video": name,
        "source": str(source),
        "source_size": [info.width, info.height],
        "source_fps": info.fps,
        "source_duration_s": n_frames / cfg.fps,
        # The part of the source the avatar is made of: all of it, unless the face leaves the picture.
        "face_span_s": [tracks.first_frame / cfg.fps, (tracks.first_frame + tracks.n_frames) / cfg.fps],
        "duration_s": tracks.n_frames / cfg.fps,
        "frames": tracks.n_frames,
        "crop_window": {"x0": int(raw.window.x0), "y0": int(raw.window.y0), "side": int(raw.window.side)},
        "tracked_fraction": float(tracks.tracked.mean()),
        "interpolated_frames": int((~tracks.tracked).sum()),
        "background_inpainted_fraction": raw.background_holes,
        **fit_stats,
        "torso": torso,
        "seconds": {k: round(v, 3) for k, v in timer.seconds.items()},
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    write_text(report_path, json.dumps(report, indent=2))
    save_config(cfg, layout.preprocess_config(name))
    return report


def fit_tracks(raw: RawTracks, cfg: PreprocessConfig) -> tuple[Tracks, fitting.ExpressionModel, dict]:
    """Raw tracker output → gap-filled, smoothed landmarks → neutral face, head pose, expression coefficients.

    Smoothing happens on the landmarks, before fitting, with a short window on the lips: pose and
    expression are then fitted to clean points, and the mouth keeps its fast closures.
    """
    tracked = raw.face_found
    raw_filled = fitting.interpolate_invalid(raw.landmarks, tracked)
    smoothed = smoothing.smooth_landmarks(
        raw_filled, cfg.smooth_window, cfg.smooth_window_mouth, cfg.smooth_polyorder, topology.LIPS
    )
    neutral = fitting.build_neutral_shape(smoothed, tracked)
    pose = fitting.fit_head_pose(smoothed, tracked, neutral)
    residuals = fitting.head_frame_residuals(smoothed, pose, neutral)
    model = fitting.fit_expression_model(residuals[tracked], neutral, cfg.n_expression)
    coeffs = fitting.encode(model, residuals)
    reconstructed = fitting.reconstruct_landmarks(model, pose, coeffs)

    body = smoothing.smooth_series(
        fitting.interpolate_invalid(raw.body, raw.body_found).reshape(len(tracked), -1),
        cfg.smooth_window,
        cfg.smooth_polyorder,
    ).reshape(raw.body.shape)
    tracks = Tracks(
        landmarks=smoothed.astype(np.float32),
        landmarks_raw=raw_filled.astype(np.float32),
        tracked=tracked,
        rotation=pose.rotvecs().astype(np.float32),
        translation=pose.translations.astype(np.float32),
        scale=pose.scales.astype(np.float32),
        euler_deg=pose.euler_degrees().astype(np.float32),
        expression=coeffs.astype(np.float32),
        body=body.astype(np.float32),
        window=raw.window.as_array(),
        fps=cfg.fps,
        size=raw.size,
        first_frame=raw.first_frame,
    )
    return tracks, model, _fit_stats(tracks, raw_filled, reconstructed, pose, model, cfg)


def register_body(layout: Layout, name: str, tracks: Tracks, raw: RawTracks, cfg: PreprocessConfig) -> dict:
    """Replace the tracks' body points by ones that follow the registered torso (when it can be registered)."""
    if not cfg.register_torso:
        return {"registered": False, "reason": "turned off (register_torso: false)"}
    registration, stats = register_torso(
        layout.frames_video(name),
        layout.matte_video(name),
        tracks.landmarks,
        tracks.translation,
        tracks.tracked,
        tracks.size,
    )
    tracks.body, more = torso_body(tracks.body, raw.body, raw.body_found, registration, tracks.size)
    return stats | more


def _fit_stats(tracks, raw_filled, reconstructed, pose, model, cfg) -> dict:
    """Numbers a person (and the tests) can check: reconstruction error, jitter removed, mouth not lagged."""
    tracked = tracks.tracked
    error = fitting.reconstruction_error(reconstructed, tracks.landmarks, tracked)
    error_vs_raw = fitting.reconstruction_error(reconstructed, raw_filled, tracked)
    rigid = np.setdiff1d(np.arange(raw_filled.shape[1]), topology.LIPS)
    opening_raw = topology.mouth_opening(raw_filled)
    opening_smooth = topology.mouth_opening(tracks.landmarks)
    raw_pose = fitting.fit_head_pose(raw_filled, tracked, model.neutral)
    return {
        "landmarks": int(raw_filled.shape[1]),
        "expression_components": int(model.basis.shape[0]),
        "expression_variance_explained": float(model.explained_variance_ratio.sum()),
        "reconstruction_px": error,
        "reconstruction_vs_raw_px": error_vs_raw,
        "jitter_px": {
            "landmarks_raw": smoothing.jitter(raw_filled[:, rigid, :2]),
            "landmarks_smoothed": smoothing.jitter(tracks.landmarks[:, rigid, :2]),
            "translation_raw": smoothing.jitter(raw_pose.translations[:, :2]),
            "translation_smoothed": smoothing.jitter(pose.translations[:, :2]),
        },
        "mouth": {
            "lag_frames": smoothing.lag_frames(opening_raw, opening_smooth),
            "attenuation": smoothing.peak_attenuation(opening_raw, opening_smooth),
            "opening_px_mean": float(opening_smooth.mean()),
            "opening_px_max": float(opening_smooth.max()),
        },
        "head_pose_deg": {
            name: {"min": float(col.min()), "median": float(np.median(col)), "max": float(col.max())}
            for name, col in zip(("yaw", "pitch", "roll"), tracks.euler_deg.T)
        },
    }


def write_preview(layout: Layout, name: str, tracks: Tracks, cfg: PreprocessConfig) -> None:
    rotations = fitting.rotations_from_rotvecs(tracks.rotation)
    audio_path = layout.audio_wav(name)
    audio = load_audio(audio_path, cfg.sample_rate) if audio_path.is_file() else None
    frames = prefetch(iter_frames(layout.frames_video(name), cfg.fps))
    with VideoWriter(layout.tracking_preview(name), fps=cfg.fps, audio=audio, sample_rate=cfg.sample_rate) as out:
        for frame in draw_tracks(frames, tracks.landmarks, rotations, tracks.tracked, tracks.body):
            out.write(frame)


def _check_length(n_frames: int, cfg: PreprocessConfig, name: str) -> None:
    if n_frames < MIN_FRAMES:
        raise TrackingError(
            f"Video {name!r} is too short: {n_frames / cfg.fps:.1f} s. "
            f"AMG needs at least {MIN_FRAMES / cfg.fps:.0f} s (and {cfg.min_duration_s / 60:.0f} min for a good avatar)."
        )
    if n_frames < cfg.min_duration_s * cfg.fps:
        log.warning(
            "Video %r is %.1f s long; at least %.0f s of talking is recommended for a good avatar.",
            name,
            n_frames / cfg.fps,
            cfg.min_duration_s,
        )


def _face_span(scan: FaceScan, n_frames: int, cfg: PreprocessConfig, name: str) -> slice:
    """The frames of video `name` the avatar is made of: all, unless the face is missing for more than
    MAX_FACE_GAP_S at a stretch (then the longest part with it, with a warning saying so)."""
    if not scan.n_with_face:
        return slice(0, n_frames)  # check_faces says there is no face
    span = scan.face_span(n_frames, round(MAX_FACE_GAP_S * cfg.fps))
    length = span.stop - span.start
    if length == n_frames:
        return span
    start_s, stop_s = span.start / cfg.fps, span.stop / cfg.fps
    if length < MIN_FRAMES:
        raise TrackingError(
            f"The face is in the picture of video {name!r} for only {length / cfg.fps:.1f} s at a stretch (from "
            f"{start_s:.1f} s to {stop_s:.1f} s): AMG needs at least {MIN_FRAMES / cfg.fps:.0f} s with the face."
        )
    log.warning(
        "The face leaves the picture in video %r: the avatar is made of the %.1f s from %.1f s to %.1f s (of %.1f s) "
        "in which it is never gone for more than %.0f s, and its held-out tail is the end of that part. Trim the "
        "video to choose another part.",
        name,
        length / cfg.fps,
        start_s,
        stop_s,
        n_frames / cfg.fps,
        MAX_FACE_GAP_S,
    )
    return span


def _samples_of(span: slice, n_frames: int, cfg: PreprocessConfig) -> slice:
    """The audio samples of the frames `span` of an `n_frames` video; to the end of the sound if the span runs to
    the video's end (the features of the last frames read a little past it, as they always did)."""
    per_frame = cfg.sample_rate / cfg.fps
    return slice(round(span.start * per_frame), round(span.stop * per_frame) if span.stop < n_frames else None)


def _extract_audio(
    source: Path, has_audio: bool, cfg: PreprocessConfig, wav_path: Path, name: str, samples: slice
) -> np.ndarray | None:
    """The video's own speech at 16 kHz mono, its `samples` (saved beside the tracks); None, with a warning, if
    it has none."""
    if not has_audio:
        log.warning(
            "Video %r has no audio track: it can be tracked, but an avatar needs its speech to learn lip-sync.", name
        )
        return None
    try:
        audio = load_audio(source, cfg.sample_rate)
    except MediaError as exc:
        log.warning("The audio track of video %r cannot be used (%s); continuing without it.", name, exc)
        return None
    audio = audio[samples]
    write_wav(wav_path, audio, cfg.sample_rate)
    return audio


def _face_centre_in_crop(scan: FaceScan, window: CropWindow, size: int) -> np.ndarray:
    centre = np.median(scan.centres, axis=0)
    return (centre - np.array([window.x0, window.y0])) * (size / window.side)


def _check_tracked_fraction(raw: RawTracks, cfg: PreprocessConfig, name: str) -> None:
    fraction = float(raw.face_found.mean())
    if fraction < cfg.min_face_fraction:
        raise TrackingError(
            f"The face mesh found the face in only {fraction:.0%} of the frames of {name!r} "
            f"(at least {cfg.min_face_fraction:.0%} needed): is the face turned away, covered or too small?"
        )
    if fraction < 1.0:
        log.warning("Face not found in %d frames of %r: interpolated and flagged.", (~raw.face_found).sum(), name)


def _capture_key(cfg: PreprocessConfig) -> str:
    return json.dumps({k: v for k, v in asdict(cfg).items() if k in CAPTURE_OPTIONS}, sort_keys=True)


def _save_capture(raw: RawTracks, cfg: PreprocessConfig, path: Path) -> None:
    raw.save(path, capture_key=_capture_key(cfg))


def _cached_capture(layout: Layout, name: str, cfg: PreprocessConfig, force: bool) -> RawTracks | None:
    """The capture pass's outputs, if they exist and were made with the same capture options."""
    path = layout.raw_tracks(name)
    if force or not (path.is_file() and layout.frames_video(name).is_file() and layout.matte_video(name).is_file()):
        return None
    try:
        raw, key = RawTracks.load(path)
    except (KeyError, DamagedFileError):  # written by an older AMG, or damaged: capture again
        return None
    if key != _capture_key(cfg):
        return None
    log.info("Reusing the tracking pass of %r (capture options unchanged).", name)
    return raw


def _outputs_exist(layout: Layout, name: str) -> bool:
    paths = [layout.tracks(name), layout.face_model(name), layout.background(name), layout.preprocess_report(name)]
    if not all(p.is_file() for p in paths):
        return False
    try:  # tracks made before torso registration are fitted again (the capture pass is reused)
        return "torso" in json.loads(layout.preprocess_report(name).read_text())
    except (OSError, ValueError):
        return False


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"Could not write {path}")
