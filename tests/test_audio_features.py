"""amg.audio: per-video-frame speech features, their robustness to odd input, and their cache."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from amg.audio import FPS, SAMPLE_RATE, AudioFeatures, compute_features, features_for_audio, features_for_video
from amg.config import AudioFeatureConfig, load_config
from amg.core.errors import AmgError, MediaError
from amg.core.layout import Layout
from amg.media.audio import load_audio, write_wav

from conftest import require_shared

HOP = SAMPLE_RATE // FPS
DEFAULT = AudioFeatureConfig()
CHEAP = AudioFeatureConfig(blocks="mel,vad,energy")  # no speech embedding: where a test needs no model output
SILENCE_FLOOR = -DEFAULT.floor_db / 10  # the mel/energy value of anything at or below the floor


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """5 s of dense read speech (LibriSpeech, female)."""
    return load_audio(require_shared("audio/librispeech_3575_female.mp3"), SAMPLE_RATE)


@pytest.fixture(scope="module")
def speech_features(speech: np.ndarray) -> AudioFeatures:
    return compute_features(speech, DEFAULT)


def assert_well_formed(features: AudioFeatures, n_frames: int, cfg: AudioFeatureConfig = DEFAULT) -> None:
    assert features.values.shape[0] == n_frames == len(features.vad)
    assert features.values.dtype == np.float32 and features.vad.dtype == np.float32
    assert np.isfinite(features.values).all() and np.isfinite(features.vad).all()
    assert tuple(features.blocks) == cfg.blocks
    columns = np.concatenate([np.arange(features.values.shape[1])[s] for s in features.blocks.values()])
    assert np.array_equal(columns, np.arange(features.values.shape[1]))  # blocks tile the columns exactly


def test_blocks_have_documented_widths_and_follow_the_requested_rows(speech, speech_features):
    widths = {name: s.stop - s.start for name, s in speech_features.blocks.items()}
    assert widths == {"mel": 4 * DEFAULT.n_mels, "embedding": 96, "vad": 1, "energy": 1}
    assert_well_formed(speech_features, math.ceil(len(speech) / HOP))
    for n_frames in (100, 160):  # the video may be shorter or longer than its audio
        assert_well_formed(compute_features(speech, CHEAP, n_frames), n_frames, CHEAP)
    padded = compute_features(speech, CHEAP, 160)
    assert np.allclose(padded.block("energy")[-20:], SILENCE_FLOOR) and np.all(padded.vad[-20:] < 0.1)
    assert np.array_equal(speech_features.block("vad")[:, 0], speech_features.vad)


def test_block_selection_and_order_come_from_the_config(speech):
    cfg = AudioFeatureConfig(blocks=("energy", "vad"))
    assert cfg == AudioFeatureConfig(blocks=" Energy, vad ") == AudioFeatureConfig(blocks="energy,vad")
    features = compute_features(speech[: 2 * SAMPLE_RATE], cfg)
    assert features.blocks == {"energy": slice(0, 1), "vad": slice(1, 2)}
    for bad in ("mel,pitch", "vad,vad", ""):
        with pytest.raises(AmgError, match="blocks"):
            compute_features(speech, AudioFeatureConfig(blocks=bad))
    with pytest.raises(AmgError, match="narrower than"):
        compute_features(speech, AudioFeatureConfig(n_mels=200))
    with pytest.raises(AmgError, match="fmax"):
        compute_features(speech, AudioFeatureConfig(fmax=9000.0))


def test_blocks_parse_from_yaml(tmp_path):
    path = tmp_path / "audio.yaml"
    path.write_text("blocks: mel, embedding\nfmax: 3400\n")
    cfg = load_config(AudioFeatureConfig, path)
    assert cfg.blocks == ("mel", "embedding") and cfg.fmax == 3400.0


def test_speech_is_detected_and_normalised_to_its_own_level(speech_features):
    vad = speech_features.vad
    assert np.mean(vad[25:100] > 0.5) > 0.8  # seconds 1-4 are continuous reading
    speech = vad > DEFAULT.vad_threshold
    # Levels are relative to the utterance's speech: speech frames sit around 0, far above the floor.
    energy = speech_features.block("energy")[:, 0]
    assert -1.0 < energy[speech].mean() < 0.5
    mel = speech_features.block("mel").reshape(len(vad), 4, -1)
    assert abs(mel[speech].mean()) < 0.1 and 0.8 < mel[speech].std() < 1.2
    embedding = speech_features.block("embedding")
    assert np.allclose(embedding[speech].mean(0), 0, atol=1e-3)


def test_a_pause_inserted_in_speech_reads_as_silence(speech):
    second = SAMPLE_RATE
    pieces = [speech[second : 2 * second], np.zeros(second, np.float32), speech[3 * second : 4 * second]]
    features = compute_features(np.concatenate(pieces), DEFAULT)
    gap = slice(FPS + 3, 2 * FPS - 3)  # the middle second, less the 25 ms windows reaching into speech
    assert features.vad[:FPS].mean() > 0.5 and features.vad[2 * FPS :].mean() > 0.5
    assert features.vad[FPS : 2 * FPS].mean() < 0.2
    assert np.allclose(features.block("energy")[gap], SILENCE_FLOOR)
    # Silence is the floor: the same in every frame and, in every band, at most the quietest speech frame.
    mel = features.block("mel")
    assert np.ptp(mel[gap], axis=0).max() < 1e-4 and mel[gap].mean() < -3.0
    assert np.all(mel[gap] <= mel[features.vad > 0.5].min(axis=0) + 1e-4)


@pytest.mark.parametrize("level_db", [None, -80.0])
def test_silence_and_faint_noise_give_silence_features(speech_features, level_db):
    rng = np.random.default_rng(0)
    samples = np.zeros(3 * SAMPLE_RATE, np.float32)
    if level_db is not None:
        samples += rng.normal(0, 10 ** (level_db / 20), len(samples)).astype(np.float32)
    features = compute_features(samples, DEFAULT)
    assert_well_formed(features, 3 * FPS)
    assert features.vad.mean() < 0.1
    # No speech: fixed reference statistics, so the faint noise is not blown up to speech-like values.
    energy = features.block("energy")
    speech_energy = speech_features.block("energy")[speech_features.vad > 0.5].mean()
    assert np.all(energy < speech_energy - 4.0)
    assert np.all(features.block("mel") < -4.0)
    # The embedding is scaled by reference statistics: the scale of speech frames, not blown up.
    assert np.all(np.abs(features.block("embedding")) < 10)


def test_features_do_not_depend_on_recording_level(speech):
    clip = speech[: 3 * SAMPLE_RATE]
    loud, quiet = compute_features(clip, DEFAULT), compute_features(clip * 0.1, DEFAULT)
    # Not bit-identical: the VAD (which picks the frames for the statistics) is not perfectly level-invariant.
    for name in ("mel", "embedding", "energy"):
        assert np.abs(loud.block(name) - quiet.block(name)).max() < 0.3
        assert np.corrcoef(loud.block(name).ravel(), quiet.block(name).ravel())[0, 1] > 0.999


def test_frames_are_aligned_with_the_video(speech):
    """Frame i covers [i/25, (i+1)/25) s: a 40 ms burst filling frame 50 peaks there, symmetrically."""
    samples = np.zeros(4 * SAMPLE_RATE, np.float32)
    samples[50 * HOP : 51 * HOP] = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(HOP) / SAMPLE_RATE)
    features = compute_features(samples, AudioFeatureConfig(blocks="embedding,energy"))
    energy = features.block("energy")[:, 0]
    assert energy.argmax() == 50 and energy[49] == pytest.approx(energy[51], abs=0.05)
    # Embedding windows are centred on their frame: those that see the burst are symmetric around it.
    embedding = features.block("embedding")
    changed = np.flatnonzero(np.abs(embedding - embedding[0]).max(1) > 1e-3)
    assert changed[0] + changed[-1] == 100 and 15 <= len(changed) <= 25


def test_real_phone_and_mp3_audio_give_one_row_per_started_frame(speech, speech_features):
    assert_well_formed(speech_features, math.ceil(len(speech) / HOP))  # mp3
    phone = load_audio(require_shared("audio/asterisk_allison_demo_instruct_73s.wav"), SAMPLE_RATE)  # 8 kHz
    assert_well_formed(compute_features(phone, CHEAP), math.ceil(len(phone) / HOP), CHEAP)
    first_10s = compute_features(phone, DEFAULT, n_frames=10 * FPS)  # the model blocks too, on a part (speed)
    assert_well_formed(first_10s, 10 * FPS)
    for features in (speech_features, first_10s):
        assert np.mean(features.vad > 0.5) > 0.6  # both are dense speech


def _synthetic_music(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0)) / 4
    beat = (np.sin(2 * np.pi * 2 * t) > 0.9) * np.random.default_rng(1).normal(0, 0.3, len(t))
    return (0.5 * chord + beat).astype(np.float32)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: np.clip(s[: 3 * SAMPLE_RATE] * 20, -1, 1), id="clipped"),
        pytest.param(lambda s: np.random.default_rng(2).uniform(-1, 1, 3 * SAMPLE_RATE), id="white-noise"),
        pytest.param(lambda s: _synthetic_music(3.0), id="music"),
        pytest.param(lambda s: s[SAMPLE_RATE : SAMPLE_RATE + 5000], id="0.3s"),
        pytest.param(lambda s: s[SAMPLE_RATE : SAMPLE_RATE + 1], id="one-sample"),
        pytest.param(lambda s: np.where(np.arange(len(s)) % 7 == 0, np.nan, s), id="nan"),
    ],
)
def test_odd_input_gives_finite_features(speech, make):
    samples = make(speech)
    assert_well_formed(compute_features(samples, DEFAULT), math.ceil(len(samples) / HOP))


def test_empty_input_is_refused_clearly():
    with pytest.raises(AmgError, match="No audio"):
        compute_features(np.zeros(0, np.float32), DEFAULT)
    assert_well_formed(compute_features(np.zeros(0, np.float32), CHEAP, n_frames=10), 10, CHEAP)


def test_save_and_load_round_trip(tmp_path, speech_features):
    path = tmp_path / "f.npz"
    speech_features.save(path)
    loaded = AudioFeatures.load(path)
    assert loaded.blocks == speech_features.blocks
    assert np.array_equal(loaded.values, speech_features.values) and np.array_equal(loaded.vad, speech_features.vad)
    path.write_bytes(b"not an npz")
    with pytest.raises(AmgError, match="f.npz is damaged.*delete it"):
        AudioFeatures.load(path)


def test_driving_audio_features_are_cached_until_the_config_changes(tmp_path):
    samples = load_audio(require_shared("audio/musetalk_eng_60s.wav"), SAMPLE_RATE)[: 30 * SAMPLE_RATE]
    layout = Layout(tmp_path)
    write_wav(layout.audio_dir("talk") / "talk.wav", samples, SAMPLE_RATE)
    cache = layout.audio_dir("talk") / "features.npz"

    first = features_for_audio(layout, "talk", CHEAP)
    assert_well_formed(first, 30 * FPS, CHEAP)
    assert (layout.audio_dir("talk") / "features_config.yaml").is_file()
    mtime = cache.stat().st_mtime_ns
    again = features_for_audio(layout, "talk", AudioFeatureConfig(blocks=("mel", "vad", "energy")))
    assert cache.stat().st_mtime_ns == mtime and np.array_equal(again.values, first.values)

    narrower = AudioFeatureConfig(blocks=CHEAP.blocks, fmax=3400.0)
    changed = features_for_audio(layout, "talk", narrower)
    assert cache.stat().st_mtime_ns != mtime and not np.array_equal(changed.values, first.values)
    mtime = cache.stat().st_mtime_ns
    features_for_audio(layout, "talk", narrower, force=True)
    assert cache.stat().st_mtime_ns != mtime


def test_video_features_follow_the_frame_count_and_need_preprocessed_audio(tmp_path, speech):
    layout = Layout(tmp_path)
    with pytest.raises(AmgError, match="preprocessing"):
        features_for_video(layout, "avatar", CHEAP, n_frames=50)
    write_wav(layout.audio_wav("avatar"), speech[: 2 * SAMPLE_RATE], SAMPLE_RATE)
    assert len(features_for_video(layout, "avatar", CHEAP, n_frames=52)) == 52
    assert (layout.preprocess_dir("avatar") / "audio_features_config.yaml").is_file()
    cache = layout.preprocess_dir("avatar") / "audio_features.npz"
    mtime = cache.stat().st_mtime_ns
    assert len(features_for_video(layout, "avatar", CHEAP, n_frames=52)) == 52
    assert cache.stat().st_mtime_ns == mtime
    assert len(features_for_video(layout, "avatar", CHEAP, n_frames=48)) == 48  # another frame count: recomputed


def test_replaced_audio_is_recomputed(tmp_path, speech):
    layout = Layout(tmp_path)
    source = layout.audio_dir("a") / "a.wav"
    write_wav(source, speech[:SAMPLE_RATE], SAMPLE_RATE)
    assert len(features_for_audio(layout, "a", CHEAP)) == FPS
    write_wav(source, speech[: 2 * SAMPLE_RATE], SAMPLE_RATE)
    later = (layout.audio_dir("a") / "features.npz").stat().st_mtime + 10
    os.utime(source, (later, later))  # coarse file-system clocks: make "newer" unambiguous
    assert len(features_for_audio(layout, "a", CHEAP)) == 2 * FPS


def test_missing_or_corrupt_audio_raises_a_clear_error(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(AmgError, match="No audio file for 'nothing'"):
        features_for_audio(layout, "nothing", CHEAP)
    corrupt = layout.audio_dir("junk") / "junk.wav"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk" * 10)
    with pytest.raises(MediaError, match="junk.wav"):
        features_for_audio(layout, "junk", CHEAP)


def test_the_slow_models_report_their_progress(speech):
    from amg.core.progress import reporting_to

    reports = []
    with reporting_to(lambda stage, done, total: reports.append((stage, done, total))):
        compute_features(np.tile(speech, 8), AudioFeatureConfig())  # long enough for several batches
    for stage in ("audio.embedding", "audio.vad"):
        done = [d for s, d, _ in reports if s == stage]
        total = next(t for s, _, t in reports if s == stage)
        assert done == list(range(1, total + 1)) and total > 1, stage


def test_a_live_stream_gets_the_files_features_chunk_by_chunk(speech):
    """amg.audio.stream in chunks of any size, given the file's statistics: mel, energy and speech probability
    equal the file's exactly; the embedding differs only where the model's 80-dB clamp sees another loudest
    frame (a shorter call). With statistics estimated as it goes, the features stay close."""
    from amg.audio.features import features_and_stats
    from amg.audio.stream import FeatureStream

    clip = speech[: 4 * SAMPLE_RATE + 1234]
    offline, stats = features_and_stats(clip, DEFAULT)
    cuts = np.cumsum(np.random.default_rng(1).integers(200, 2600, 80))
    cuts = cuts[cuts < len(clip)]
    for fixed in (stats, None):
        stream, reads = FeatureStream(DEFAULT, stats=fixed), []
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(clip)]):
            stream.push(clip[a:b])
            if stream.available > 12:  # read as a live stream reads: its recent frames, every chunk
                reads.append(stream.window(stream.available - 12, stream.available))
        stream.finish()
        assert stream.available == len(offline) and stream.oldest == 0
        assert len(reads) > 20 and all(np.isfinite(r.values).all() for r in reads)
        streamed = stream.window(0, stream.available)
        for name, columns in offline.blocks.items():
            diff = np.abs(streamed.values[:, columns] - offline.values[:, columns])
            if fixed is None:
                assert diff.mean() < 0.35, name  # the statistics of the speech so far, not of all of it
            elif name == "embedding":
                assert diff.mean() < 0.03 and np.median(diff) < 0.02  # in units of the spread over speech
            else:
                assert diff.max() == 0.0, name
        np.testing.assert_array_equal(streamed.vad, offline.vad)
