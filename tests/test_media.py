"""amg.media on real media (each codec we must read) and on small videos synthesised with PyAV."""

from __future__ import annotations

import itertools
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from amg.core.errors import MediaError
from amg.media import VideoWriter, iter_frames, load_audio, probe_video, write_video, write_wav

FPS = 25
SR = 16000

# --- synthetic media helpers -------------------------------------------------------------------------

CODE_BITS = 8


def code_image(k: int, height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB image showing the number k as 8 black/white 8-px-wide bars: survives H.264 compression."""
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(CODE_BITS):
        if k >> bit & 1:
            image[:16, 8 * bit : 8 * bit + 8] = 255
    return image


def read_code(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(CODE_BITS) if image[8, 8 * bit + 4].mean() > 128)


def synth_video(
    path: Path, images: list[np.ndarray], pts_ms: list[int], rotation_ccw: int = 0, pix_fmt: str = "yuv420p"
) -> Path:
    """Encode `images` with libx264, shown at `pts_ms`, optionally with a display-matrix rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264")
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation_ccw:
            stream.set_display_rotation(rotation_ccw)
        for image, pts in zip(images, pts_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


# --- real media: every codec we must decode ----------------------------------------------------------


@pytest.mark.parametrize(
    "relpath, codec, shape",
    [
        ("video/hdtf_aoc_8s.mp4", "mpeg4", (512, 512, 3)),
        ("video/grid_bbaf2n.mpg", "mpeg1video", (288, 360, 3)),
        ("video/obama_clip2.mp4", "h264", (256, 256, 3)),
    ],
)
def test_decodes_whole_video_and_its_audio(shared_media, relpath, codec, shape):
    path = shared_media(relpath)
    info = probe_video(path)
    assert info.codec == codec
    assert (info.height, info.width) == shape[:2]
    count = 0
    for frame in iter_frames(path, FPS):
        assert frame.shape == shape and frame.dtype == np.uint8
        count += 1
    assert count == info.n_frames(FPS)
    assert abs(count - round(info.duration * FPS)) <= 1
    assert frame.std() > 10  # a real picture, not a blank one

    audio = load_audio(path, SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SR - info.duration) <= 0.1


def test_decodes_hevc_portrait(shared_media):
    path = shared_media("video/latentsync_demo1.mp4")
    info = probe_video(path)
    assert (info.codec, info.width, info.height, info.rotation) == ("hevc", 1080, 1920, 0)
    assert info.n_frames(FPS) == round(info.duration * FPS) == 250
    # Only the first second: decoding all 250 1080x1920 frames would dominate the suite's run time.
    frames = list(itertools.islice(iter_frames(path, FPS), 25))
    assert len(frames) == 25
    assert all(f.shape == (1920, 1080, 3) and f.dtype == np.uint8 for f in frames)
    assert frames[0].std() > 10
    assert abs(len(load_audio(path, SR)) / SR - info.duration) <= 0.1


def test_30fps_is_resampled_to_the_source_frame_shown_at_each_slot_centre(shared_media):
    path = shared_media("video/obama_clip2.mp4")
    info = probe_video(path)
    assert info.fps == 30
    # Source frame j is shown from j/30 s, so slot i (centre (i + 0.5)/25 s) shows j = floor((i + 0.5) * 1.2).
    slots = [0, 1, 2, 3, 4, 5, 100, info.n_frames(FPS) - 1]
    wanted = {i: int((i + 0.5) * 30 / 25) for i in slots}
    with av.open(str(path)) as container:
        source = {
            j: frame.to_ndarray(format="rgb24")
            for j, frame in enumerate(container.decode(video=0))
            if j in wanted.values()
        }
    out = {i: frame for i, frame in enumerate(iter_frames(path, FPS)) if i in wanted}
    for i in slots:
        assert np.array_equal(out[i], source[wanted[i]]), f"slot {i} should show source frame {wanted[i]}"


@pytest.mark.parametrize(
    "relpath",
    [
        "audio/librispeech_3575_female.mp3",
        "audio/jfk_inaugural_11s.flac",
        "audio/asterisk_allison_demo_instruct_73s.wav",  # 8 kHz
    ],
)
def test_loads_audio_formats_at_16k_mono(shared_media, relpath):
    path = shared_media(relpath)
    # The duration the container declares; the decoded length must match it.
    with av.open(str(path)) as container:
        expected_s = container.duration / av.time_base
    audio = load_audio(path, SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SR - expected_s) <= 0.1
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_a_truncated_mp3_warns_that_it_is_shorter_than_it_declares(shared_media, tmp_path, caplog):
    data = shared_media("audio/librispeech_3575_female.mp3").read_bytes()  # 5.0 s
    truncated = tmp_path / "cut.mp3"
    truncated.write_bytes(data[: len(data) // 4])
    audio = load_audio(truncated, SR)
    assert 0.5 < len(audio) / SR < 2.0
    assert "declares 5.0 s of audio but only 1.2 s could be decoded" in caplog.text
    caplog.clear()
    load_audio(shared_media("audio/librispeech_3575_female.mp3"), SR)
    assert "declares" not in caplog.text


def test_decoding_stops_at_the_duration_limit(tmp_path):
    from amg.media.audio import AudioTooLong

    t = np.arange(3 * SR) / SR
    write_wav(tmp_path / "3s.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    assert len(load_audio(tmp_path / "3s.wav", SR, max_seconds=3.0)) == 3 * SR
    with pytest.raises(AudioTooLong, match="longer than the limit of 2 s"):
        load_audio(tmp_path / "3s.wav", SR, max_seconds=2.0)


def test_8k_wav_is_upsampled_faithfully(shared_media):
    path = shared_media("audio/asterisk_allison_demo_instruct_73s.wav")
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 8000 and wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    audio = load_audio(path, SR)
    assert abs(len(audio) - 2 * len(pcm)) <= 2
    # Every other 16 kHz sample lands on an 8 kHz one; a good resampler keeps the waveform there.
    n = min(len(pcm), len(audio) // 2)
    assert np.corrcoef(audio[: 2 * n : 2], pcm[:n])[0, 1] > 0.99


# --- synthetic: variable frame rate, rotation, odd sizes ---------------------------------------------


def test_variable_frame_rate_shows_the_latest_frame_at_each_slot_centre(tmp_path):
    gaps_ms = [10, 33, 150, 40, 70, 10, 10, 200, 40, 33, 80, 120, 40] * 4  # irregular, ~3.4 s in all
    pts_ms = [0, *itertools.accumulate(gaps_ms)]
    path = synth_video(tmp_path / "vfr.mp4", [code_image(k) for k in range(len(pts_ms))], pts_ms)
    info = probe_video(path)
    frames = list(iter_frames(path, FPS))
    assert len(frames) == info.n_frames(FPS) == round(info.duration * FPS)
    assert info.duration == pytest.approx(pts_ms[-1] / 1000, abs=0.2)
    for i, frame in enumerate(frames):
        centre_ms = (i + 0.5) * 1000 / FPS
        expected = max(k for k, pts in enumerate(pts_ms) if pts <= centre_ms)
        assert read_code(frame) == expected, f"output frame {i} at {centre_ms} ms"


@pytest.mark.parametrize(
    "rotation_ccw, rotation, marker_corner",
    [
        # A phone held upright records landscape pixels tagged "rotate 90" (display matrix -90):
        # players turn them clockwise, so the coded top-left corner ends up top-right (OpenCV agrees).
        (-90, 90, "top-right"),
        (90, 270, "bottom-left"),
        (180, 180, "bottom-right"),
    ],
)
def test_rotation_metadata_is_applied(tmp_path, rotation_ccw, rotation, marker_corner):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:16, :16] = 255  # marker in the coded top-left corner
    path = synth_video(tmp_path / "rot.mp4", [image] * 10, [40 * k for k in range(10)], rotation_ccw)
    info = probe_video(path)
    assert info.rotation == rotation
    expected_shape = (48, 64) if rotation == 180 else (64, 48)
    assert (info.height, info.width) == expected_shape
    frame = next(iter_frames(path, FPS))
    assert frame.shape[:2] == expected_shape
    height, width = expected_shape
    corners = {
        "top-left": (4, 4),
        "top-right": (4, width - 5),
        "bottom-left": (height - 5, 4),
        "bottom-right": (height - 5, width - 5),
    }
    for name, (y, x) in corners.items():
        assert (frame[y, x].mean() > 128) == (name == marker_corner), name


def test_odd_size_video_decodes_at_its_size(tmp_path):
    image = np.zeros((21, 33, 3), np.uint8)
    image[:, :16] = 200
    # yuv444p: H.264 allows odd sizes only without chroma subsampling.
    path = synth_video(tmp_path / "odd.mp4", [image] * 5, [40 * k for k in range(5)], pix_fmt="yuv444p")
    frames = list(iter_frames(path, FPS))
    assert len(frames) == 5
    assert frames[0].shape == (21, 33, 3)
    assert np.abs(frames[0].astype(int) - image).mean() < 3


# --- writer ---------------------------------------------------------------------------------------------


def test_writer_pads_audio_to_the_video_length(tmp_path):
    path = tmp_path / "out.mp4"
    write_video(path, (code_image(k) for k in range(50)), FPS, audio=tone(1.5), sample_rate=SR)

    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert audio.codec_context.name == "aac"
        assert float(audio.duration * audio.time_base) == pytest.approx(2.0, abs=0.04)
        pts = sorted(p.pts * p.time_base for p in container.demux(video) if p.pts is not None)
    assert set(np.diff(pts)) == {Fraction(1, FPS)}  # constant frame rate, exactly

    info = probe_video(path)
    assert (info.duration, info.n_frames(FPS), info.has_audio) == (2.0, 50, True)
    assert [read_code(f) for f in iter_frames(path, FPS)] == list(range(50))  # no frame lost or repeated

    samples = load_audio(path, SR)
    assert len(samples) / SR == pytest.approx(2.0, abs=0.04)
    assert np.sqrt(np.mean(samples[: int(1.4 * SR)] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert np.abs(samples[int(1.6 * SR) :]).max() < 0.01  # the padding is silence


def test_writer_audio_set_later_is_trimmed_to_the_frames(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, FPS) as writer:
        writer.audio = tone(3.0)
        for k in range(20):
            writer.write(code_image(k))
        with pytest.raises(RuntimeError, match="before the first frame"):
            writer.audio = tone(1.0)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(20 / FPS, abs=0.04)


def test_writer_pads_odd_sizes_to_even(tmp_path):
    gradient = np.linspace(0, 255, 65, dtype=np.uint8)
    image = np.stack([np.tile(gradient, (47, 1))] * 3, axis=-1)
    path = tmp_path / "odd.mp4"
    write_video(path, [image] * 5, FPS)
    info = probe_video(path)
    assert (info.width, info.height) == (66, 48)
    frame = next(iter_frames(path, FPS))
    assert np.abs(frame[:47, :65].astype(int) - image).mean() < 3
    # The padding replicates the edge pixels rather than adding a black border.
    assert np.abs(frame[:, 65].astype(int) - frame[:, 64]).max() < 8
    assert np.abs(frame[47].astype(int) - frame[46]).max() < 8


def test_written_video_says_its_colour_matrix(tmp_path):
    """The encoder converts RGB with BT.601 at limited range and the stream says so, so a player does not guess
    BT.709 for an HD size (which would show this red at (216, 18, 0))."""
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    path = tmp_path / "red.mp4"
    write_video(path, [red] * 3, FPS)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_range) == (6, 1)  # AVCOL_SPC_SMPTE170M, AVCOL_RANGE_MPEG
    assert np.abs(frame.to_ndarray(format="rgb24")[16:48, 16:48].astype(int) - red[16:48, 16:48]).max() <= 3
    guessed = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray()
    assert guessed[32, 32, 0] - 200 > 10 and guessed[32, 32, 1] > 10


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(KeyError), VideoWriter(path, FPS, audio=tone(1.0)) as writer:
        writer.write(code_image(1))
        raise KeyError("caller failed mid-way")
    with pytest.raises(ValueError, match="no frames"), VideoWriter(path, FPS):
        pass
    with pytest.raises(ValueError, match="frame size changed"), VideoWriter(path, FPS) as writer:
        writer.write(code_image(1))
        writer.write(code_image(1, height=50))
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file


def test_write_wav_round_trip(tmp_path):
    path = tmp_path / "a.wav"
    samples = np.concatenate([tone(0.5), [2.0, -2.0]]).astype(np.float32)
    write_wav(path, samples, SR)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SR)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert list(pcm[-2:]) == [32767, -32767]  # clipped, not wrapped around
    assert np.abs(load_audio(path, SR)[:-2] - samples[:-2]).max() < 1e-3


# --- errors ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    for read in (probe_video, load_audio, lambda p: next(iter_frames(p))):
        with pytest.raises(MediaError, match="nope.mp4 does not exist"):
            read(missing)


def test_text_file_is_not_media(tmp_path):
    for name in ("notes.mp4", "notes.wav"):
        path = tmp_path / name
        path.write_text("these are meeting notes, not a video\n" * 20)
        with pytest.raises(MediaError, match=f"{name} is not a readable video"):
            probe_video(path)
        with pytest.raises(MediaError, match=f"{name} is not a readable media file"):
            load_audio(path)


def test_missing_tracks(tmp_path):
    silent_video = synth_video(tmp_path / "silent.mp4", [code_image(1)] * 3, [0, 40, 80])
    with pytest.raises(MediaError, match="silent.mp4 has no audio track"):
        load_audio(silent_video)
    speech = tmp_path / "speech.wav"
    write_wav(speech, tone(0.5), SR)
    with pytest.raises(MediaError, match="speech.wav has no video track"):
        probe_video(speech)


def test_corrupt_and_truncated_video(shared_media, tmp_path):
    data = bytearray(shared_media("video/obama_clip2.mp4").read_bytes())
    garbled = tmp_path / "garbled.mp4"
    start = len(data) // 3
    garbled.write_bytes(data[:start] + np.random.default_rng(0).bytes(20000) + data[start + 20000 :])
    with pytest.raises(MediaError, match="garbled.mp4 is corrupt"):
        for _ in iter_frames(garbled):
            pass
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated.mp4 is truncated"):
        for _ in iter_frames(truncated):
            pass
