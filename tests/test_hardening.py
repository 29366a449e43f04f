"""Damaged, missing and unwritable files and nonsense options: one `error:` line saying what to do, never a
traceback, and nothing the user had is overwritten."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from amg.cli import main as amg_main
from amg.config import Head2BodyConfig
from amg.core.checkpoints import is_finished, load_checkpoint, save_checkpoint
from amg.core.errors import AmgError, DamagedFileError
from amg.core.fsutil import NpzRecord
from amg.core.layout import Layout
from amg.motion.body import Head2Body

from test_training import TinyConfig, _train

NAME = "anna"


@dataclass
class Record(NpzRecord):
    values: np.ndarray
    size: int


def cut_in_half(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def the_error_line(capsys) -> str:
    """The one `error:` line of a command that got as far as showing progress bars (which stderr also holds)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(tmp_path / "root")


@pytest.mark.parametrize(
    ("file", "remedy"),
    [
        ("tracks", f"amg preprocess {{root}} {NAME} --force"),
        ("gan_references", f"amg train {{root}} {NAME} --stage gan --force"),
    ],
)
def test_a_cut_npz_names_the_file_and_the_command_that_rebuilds_it(layout, file, remedy):
    path = getattr(layout, file)(NAME)
    Record(np.arange(100_000.0), 7).save(path)
    assert Record.load(path).size == 7
    cut_in_half(path)
    with pytest.raises(DamagedFileError) as caught:
        Record.load(path)
    assert str(caught.value).startswith(f"{path} is damaged (BadZipFile")
    assert remedy.format(root=layout.root) in str(caught.value)


def test_head_to_body_is_an_npz_and_garbage_in_its_place_is_reported(layout):
    path = layout.head2body(NAME)
    assert path.suffix == ".npz"
    cfg = Head2BodyConfig(ridge=2.0)
    body = Head2Body(np.ones((6, 8)), np.zeros(6), np.ones(6), np.zeros(8), 256, cfg, {"val_shoulder_px": 3.5})
    path.parent.mkdir(parents=True)
    body.save(path)
    loaded = Head2Body.load(path)
    assert loaded.cfg == cfg and loaded.size == 256 and loaded.metrics == {"val_shoulder_px": 3.5}
    np.testing.assert_array_equal(loaded.weights, body.weights)
    path.write_bytes(b"\x80\x04garbage, not what AMG wrote")
    with pytest.raises(DamagedFileError, match=f"amg train {layout.root} {NAME} --stage motion --force"):
        Head2Body.load(path)


def test_a_truncated_motion_checkpoint_is_reported_as_damaged_not_as_untrained(layout, capsys):
    path = layout.audio2expression(NAME)
    save_checkpoint(path, finished=True, model={"w": torch.zeros(1000)})
    cut_in_half(path)
    assert not is_finished(path)
    assert amg_main(["motion", str(layout.root), "speech", NAME]) == 2
    line = one_error_line(capsys)
    assert f"{path} is damaged" in line and f"amg train {layout.root} {NAME} --stage motion --force" in line


def test_a_truncated_checkpoint_is_kept_aside_and_training_starts_again_loudly(tmp_path, caplog):
    path = tmp_path / "latest_GAN_model.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(path, TinyConfig(), stop_at=7)  # an unfinished checkpoint at step 5
    cut_in_half(path)
    damaged = path.read_bytes()
    with pytest.raises(DamagedFileError):
        load_checkpoint(path)
    _train(path, TinyConfig())
    assert "DAMAGED CHECKPOINT" in caplog.text and "training from scratch" in caplog.text
    assert (tmp_path / "latest_GAN_model.pt.damaged").read_bytes() == damaged  # not overwritten
    assert is_finished(path) and load_checkpoint(path)["step"] == TinyConfig().steps


def as_a_user_without_root_override(command: list[str]) -> list[str]:
    """`command` run so that file permissions apply (root's override of them dropped, if this is root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *command]


def test_a_read_only_dataroot_is_one_line_naming_the_folder(layout):
    from conftest import link_shared

    link_shared(layout, "video", NAME, "video/may_5s.mp4")
    link_shared(layout, "audio", "speech", "audio/cmu_arctic_a0007.wav")
    for folder in (layout.root, *layout.root.rglob("*")):
        if not folder.is_symlink():
            folder.chmod(0o555)
    try:
        for args in (["preprocess", str(layout.root), NAME], ["run", str(layout.root), "speech", NAME]):
            done = subprocess.run(
                as_a_user_without_root_override([sys.executable, "-m", "amg", *args]), capture_output=True, text=True
            )
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert errors == [
                f"error: cannot write in the folder {layout.video_dir(NAME)} (Permission denied): "
                "make it writable, or use another DATAROOT."
            ]
    finally:
        for folder in (layout.root, *layout.root.rglob("*")):
            if not folder.is_symlink():
                folder.chmod(0o755)


@pytest.mark.parametrize("command", [["run", "{root}", "speech", NAME], ["preprocess", "{root}", NAME]])
def test_a_missing_dataroot_says_so(tmp_path, capsys, command):
    root = tmp_path / "nonexistent"
    assert amg_main([arg.format(root=root) for arg in command]) == 2
    assert (
        one_error_line(capsys)
        == f"error: DATAROOT {root} does not exist (it holds input_data/, checkpoints/, output_data/)."
    )


def test_a_finished_write_removes_the_parts_a_killed_writer_left_and_keeps_live_ones(tmp_path):
    from amg.core.fsutil import write_text

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".generated_video.{int(gone.stdout)}.k3j2h1.part.mp4"  # its writer was kill -9'ed
    live = tmp_path / f".generated_video.{os.getppid()}.a8b7c6.part.mp4"  # another process still writing
    other = tmp_path / f".motion.{int(gone.stdout)}.x1y2z3.part.npz"  # a part of another file
    for part in (abandoned, live, other):
        part.write_bytes(b"half a video")
    write_text(tmp_path / "generated_video.mp4", "done")
    assert not abandoned.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "generated_video.mp4"])


@pytest.mark.slow
def test_mediapipe_and_tflite_log_noise_is_hidden_unless_verbose(layout):
    from conftest import link_shared

    link_shared(layout, "video", NAME, "video/may_5s.mp4")
    noise = ("inference_feedback_manager", "NORM_RECT without IMAGE_DIMENSIONS", "XNNPACK delegate")
    for verbose, shown in (([], False), (["-v"], True)):
        command = [sys.executable, "-m", "amg", *verbose, "preprocess", str(layout.root), NAME, "--force"]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert any(n in done.stderr for n in noise) == shown, done.stderr
        assert "Tracking:" in done.stderr and "Video 'anna' is 5.0 s long" in done.stderr  # AMG's own output stays


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--set", "gan.steps=-5"], "error: Config gan.steps: expected a finite number >= 0, got -5."),
        (
            ["--set", "motion.expression.lr=nan"],
            "error: Config motion.expression.lr: expected a finite number >= 0, got nan.",
        ),
        (["--set", "gan.eval_every=0"], "error: Config gan.eval_every: expected a finite number >= 1, got 0."),
        (
            ["--max-minutes", "-1"],
            "error: argument --max-minutes: expected a positive number of minutes (at most 1e+06), got '-1' (see `amg train --help`).",
        ),
    ],
)
def test_nonsense_options_are_refused_in_one_line(layout, capsys, option, message):
    layout.root.mkdir(parents=True)
    with pytest.raises(SystemExit) if option[0] == "--max-minutes" else contextlib.nullcontext() as exited:
        assert amg_main(["train", str(layout.root), NAME, *option]) == 2
    if exited is not None:
        assert exited.value.code == 2
    assert one_error_line(capsys) == message


def test_range_rule_is_generic_over_every_numeric_option():
    from amg.config import AvatarConfig, PreprocessConfig, load_config

    assert load_config(AvatarConfig, None, **{"gan.steps": "0", "gan.save_every": "1"}).gan.steps == 0
    with pytest.raises(AmgError, match="Config pose_every: expected a finite number >= 1"):
        load_config(PreprocessConfig, None, pose_every=0)
    with pytest.raises(AmgError, match="Config motion.pose.feature_noise: expected a finite number >= 0"):
        load_config(AvatarConfig, None, **{"motion.pose.feature_noise": -0.1})


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_instead_of_spinning_unless_the_user_says_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (
        {"OMP_WAIT_POLICY": given} if given else {}
    )
    code = "import amg, os; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == expected


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--blink-rate", "9"], "error: argument --blink-rate: expected a multiplier between 0 and 5, got '9'"),
        (["--blink-rate", "nan"], "error: argument --blink-rate: expected a multiplier between 0 and 5, got 'nan'"),
        (["--blinks", "sometimes"], "error: argument --blinks: invalid choice: 'sometimes'"),
    ],
)
def test_nonsense_blink_options_are_refused_in_one_line(layout, capsys, option, message):
    layout.root.mkdir(parents=True)
    with pytest.raises(SystemExit) as exited:
        amg_main(["run", str(layout.root), "speech", NAME, *option])
    assert exited.value.code == 2
    assert one_error_line(capsys).startswith(message)


def test_a_truncated_eye_model_is_a_damaged_file_error(tmp_path):
    from amg.motion.eyes import EyeModel

    path = tmp_path / "eyes.npz"
    fields = {f: np.zeros(2) for f in EyeModel.__dataclass_fields__}
    EyeModel(**fields).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DamagedFileError, match="eyes.npz"):
        EyeModel.load(path)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "No manifest at"),
        ("audio,avatr\n", "the header lacks the column(s) avatar."),
        ("audio,avatar,seed\nspeech,jon,x\n", "line 2: column seed: 'x' is not a number"),
        ("audio,avatar\n../up,jon\n", "line 2:"),
        ("audio,avatar\nnone_here,jon\n", "No audio file for 'none_here'"),
    ],
)
def test_a_bad_batch_manifest_is_one_line(layout, tmp_path, capsys, manifest, message):
    layout.root.mkdir()
    path = tmp_path / "renders.csv"
    if manifest is not None:
        path.write_text(manifest)
    assert amg_main(["batch", str(layout.root), str(path)]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


# --- hardening, round 3 (issue 32) ------------------------------------------------------------------------------
def tree(root) -> dict[str, bytes]:
    """Every file under `root` (following its symbolic links) with its content."""
    files = {}
    for folder, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


@pytest.fixture
def trained(first_run, tmp_path) -> tuple[Layout, str]:
    """A copy of first_run's trained avatar (its models copied, its preprocessed video shared)."""
    source, name = first_run[0], first_run[1]
    layout = Layout(tmp_path / "trained")
    layout.root.mkdir()
    (layout.root / "input_data").symlink_to((source.root / "input_data").resolve())
    shutil.copytree(source.checkpoint_dir(name), layout.checkpoint_dir(name))
    return layout, name


def tiny_training(layout: Layout, name: str, *sets: str) -> list[str]:
    """`amg train` of the gan at first_run's settings, with more `--set`s."""
    from conftest import TINY

    options = [f"--set={key}={value}" for key, value in TINY.items()] + [f"--set={s}" for s in sets]
    return ["train", str(layout.root), name, "--stage", "gan", "--preset", "fast", *options]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("gan.size=-1", "Config gan.size: expected a finite number >= 0, got -1."),
        ("gan.size=7", "Config gan.size: 7 px cannot be halved 4 times (gan.n_levels): use a multiple of 16."),
        ("gan.size=72", "Config gan.size: 72 px cannot be halved 4 times (gan.n_levels): use a multiple of 16."),
        ("gan.n_candidates=0", "Config gan.n_candidates: expected a finite number >= 1, got 0."),
        ("motion.expression.batch_size=0", "Config motion.expression.batch_size: expected a finite number >= 1"),
    ],
)
def test_an_option_the_networks_cannot_take_is_refused_before_anything_is_written(trained, capsys, option, message):
    layout, name = trained
    before = tree(layout.root)
    assert amg_main(tiny_training(layout, name, option)) == 2
    assert one_error_line(capsys).startswith(f"error: {message}")
    assert tree(layout.root) == before  # the old config still beside the old checkpoint


@pytest.mark.slow
def test_a_full_disk_mid_training_leaves_the_old_config_beside_the_old_checkpoint(trained, capsys, monkeypatch):
    import errno

    layout, name = trained
    pair = [layout.gan_config(name), layout.gan_checkpoint(name), layout.gan_references(name)]
    before = [path.read_bytes() for path in pair]

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    assert amg_main(tiny_training(layout, name, "gan.steps=+4")) == 2
    assert the_error_line(capsys) == (
        "error: could not write (No space left on device): free some space and run the same command again (what "
        "was finished is kept; nothing was left half-written)."
    )
    assert [path.read_bytes() for path in pair] == before
    assert not [p for p in layout.checkpoint_dir(name).iterdir() if ".part" in p.name]


def test_a_failed_npz_write_closes_its_zip_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk in the middle of an .npz (the motion `amg run` writes first): the error, and no second one
    from a zip file that the garbage collector cannot close (numpy's savez leaves it open)."""
    import errno
    import gc

    from amg.core.fsutil import save_npz

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(np.lib.format, "write_array", full_disk)
    with pytest.raises(OSError) as caught:
        save_npz(tmp_path / "motion.npz", a=np.zeros(10), b=np.ones(3))
    del caught
    gc.collect()
    assert unraisable == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["motion", "{root}", "speech", NAME, "--seed", "-1"], "argument --seed: expected a whole number from 0"),
        (["run", "{root}", "speech", NAME, "--seed", "99999999999"], "argument --seed: expected a whole number from 0"),
        (["motion", "{root}", "speech", NAME, "--temperature", "nan"], "argument --temperature: expected a number"),
        (["motion", "{root}", "speech", NAME, "--intensity", "1e308"], "argument --intensity: expected a number"),
        (["live", "{root}", NAME, "--chunk-ms", "nan"], "argument --chunk-ms: expected 1-1000 ms, got 'nan'"),
        (["serve", "{root}", "--port", "99999"], "argument --port: expected a TCP port from 1 to 65535"),
        (["serve", "{root}", "--workers", "0"], "argument --workers: expected 1-256 workers, got '0'"),
        (["batch", "{root}", "x.csv", "--workers", "0"], "argument --workers: expected 1-256 workers, got '0'"),
        (["eval", "{root}", NAME, "--holdout", "1.5"], "argument --holdout: expected a fraction between 0 and 1"),
    ],
)
def test_nonsense_numbers_on_the_command_line_are_one_usage_line(layout, capsys, command, message):
    layout.root.mkdir(parents=True)
    with pytest.raises(SystemExit) as exited:
        amg_main([arg.format(root=layout.root) for arg in command])
    assert exited.value.code == 2 and one_error_line(capsys).startswith(f"error: {message}")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("-1", "Config size: expected a finite number >= 0, got -1."),
        ("7", "Config size: 7 px leaves the face mesh too few pixels: use 64 or more, or 0."),
    ],
)
def test_a_crop_size_the_trackers_cannot_use_is_refused_before_anything_is_written(layout, capsys, size, message):
    from conftest import link_shared

    link_shared(layout, "video", NAME, "video/may_5s.mp4")
    before = tree(layout.root)
    assert amg_main(["preprocess", str(layout.root), NAME, "--size", size]) == 2
    assert one_error_line(capsys) == f"error: {message}"
    assert tree(layout.root) == before


def test_serving_a_missing_dataroot_says_so_and_creates_nothing(tmp_path, capsys):
    root = tmp_path / "typo"
    assert amg_main(["serve", str(root)]) == 2
    assert one_error_line(capsys).startswith(f"error: DATAROOT {root} does not exist")
    assert not root.exists()


def test_samples_onto_a_file_are_one_line(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert amg_main(["sample", str(path)]) == 2
    assert one_error_line(capsys).startswith(f"error: DATAROOT {path} is a file")
    assert path.read_text() == "mine"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_a_config_file_saved_by_a_windows_editor_is_read(tmp_path, encoding):
    from amg.config import AvatarConfig, load_config

    path = tmp_path / "avatar.yaml"
    path.write_text("gan:\n  steps: 40  # é\n", encoding=encoding)
    assert load_config(AvatarConfig, path).gan.steps == 40


def test_a_config_file_in_another_encoding_is_one_line(layout, capsys):
    layout.root.mkdir(parents=True)
    path = layout.root / "avatar.yaml"
    path.write_bytes("gan:\n  steps: 40  # é\n".encode("latin-1"))
    assert amg_main(["train", str(layout.root), NAME, "--config", str(path)]) == 2
    assert one_error_line(capsys).startswith(f"error: {path} is not UTF-8 or UTF-16 text (byte")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_a_manifest_saved_by_excel_or_a_windows_editor_is_read(tmp_path, encoding):
    from amg.service.batch import read_manifest

    path = tmp_path / "renders.csv"
    path.write_text("audio,avatar,seed\r\nspeech,jon,7\r\n", encoding=encoding)
    rows = read_manifest(path)
    assert [(r.audio, r.avatar, r.options.seed) for r in rows] == [("speech", "jon", 7)]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("x" * 200_000, "line 2: field larger than field limit (131072)"),
        ("x" * 50_000, f"line 2: Invalid avatar name '{'x' * 60}... (50000 characters)'"),
    ],
)
def test_a_huge_manifest_cell_is_one_short_line(layout, tmp_path, capsys, cell, message):
    layout.root.mkdir()
    path = tmp_path / "renders.csv"
    path.write_text(f"audio,avatar\nspeech,{cell}\n")
    assert amg_main(["batch", str(layout.root), str(path)]) == 2
    line = one_error_line(capsys)
    assert message in line and len(line) < 400


def test_a_manifest_of_untrained_avatars_is_refused_before_any_render_in_one_short_line(layout, tmp_path, capsys):
    from conftest import link_shared

    link_shared(layout, "audio", "speech", "audio/cmu_arctic_a0007.wav")
    path = tmp_path / "renders.csv"
    path.write_text("audio,avatar\n" + "".join(f"speech,ghost{i}\n" for i in range(1000)))
    assert amg_main(["batch", str(layout.root), str(path)]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: 1000 avatar(s) of the manifest are not trained: ghost0, ghost1, ghost10, ")
    assert "and 995 more" in line and len(line) < 300
    assert not (layout.root / "output_data").exists()


def test_names_are_short_enough_for_their_output_folder(tmp_path):
    from amg.core.layout import MAX_NAME, validate_name

    with pytest.raises(AmgError, match=f"use 1-{MAX_NAME} ASCII"):
        validate_name("a" * (MAX_NAME + 1), "audio name")
    folder = Layout(tmp_path).output_dir("a" * MAX_NAME, "v" * MAX_NAME)
    folder.mkdir(parents=True)  # the longest names still make a folder (255 bytes at most)
    (folder / "generated_video.mp4").write_bytes(b"")


def test_a_float_wav_holding_nan_and_inf_is_read_as_silence_and_full_scale(tmp_path, caplog):
    import scipy.io.wavfile

    from amg.media import load_audio

    samples = np.full(16000, 0.25, np.float32)
    samples[100:200], samples[300], samples[400] = np.nan, np.inf, -np.inf
    path = tmp_path / "float.wav"
    scipy.io.wavfile.write(path, 16000, samples)
    loaded = load_audio(path)
    assert np.isfinite(loaded).all() and np.abs(loaded).max() <= 1
    assert (loaded[120:180] == 0).all() and "102 samples that are not numbers" in caplog.text


@pytest.mark.slow
def test_eval_of_a_video_without_sound_says_so_before_anything_else(layout, capsys):
    from amg.media import iter_frames, write_video

    from conftest import require_shared

    layout.video_dir("mute").mkdir(parents=True)
    write_video(layout.video_dir("mute") / "mute.mp4", iter_frames(require_shared("video/may_5s.mp4")))
    assert amg_main(["eval", str(layout.root), "mute"]) == 2
    assert the_error_line(capsys).startswith("error: Video 'mute' has no sound: an avatar learns its lip-sync")
    assert not layout.checkpoint_dir("mute").exists()


def test_a_benchmark_without_the_shared_media_says_what_is_missing_and_replaces_a_stale_link(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shared_data.py"
    spec = importlib.util.spec_from_file_location("shared_data", path)
    shared_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared_data)
    monkeypatch.setattr(shared_data, "SHARED", tmp_path / "shared" / "data")
    target = tmp_path / "bench" / "clip.mp4"
    with pytest.raises(SystemExit, match=f"shared media not found: {tmp_path / 'shared' / 'data' / 'video' / 'x.mp4'}"):
        shared_data.link_shared("video/x.mp4", target)
    assert not target.is_symlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(tmp_path / "gone.mp4")  # what an older run left
    real = tmp_path / "shared" / "data" / "video" / "x.mp4"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"video")
    shared_data.link_shared("video/x.mp4", target)
    assert target.read_bytes() == b"video"


# --- the fuzz: every numeric option of the command line, every option of the configs ----------------------------
HOSTILE = ("nan", "inf", "-inf", "1e308", str(10**30), "0", "-1", "2.5", "abc", "")


def config_keys(cls, prefix: str = ""):
    """The dotted key (`gan.steps`) of every option of config class `cls`, its nested configs' included."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            yield from config_keys(hints[field.name], f"{prefix}{field.name}.")
        else:
            yield prefix + field.name


def a_dataroot_with_an_avatar(root) -> None:
    """Files `--set` must never touch when it refuses a value."""
    layout = Layout(root)
    save_checkpoint(layout.gan_checkpoint(NAME), finished=True, step=30)
    layout.gan_config(NAME).write_text("# GanConfig\nsize: 128\n")
    layout.preprocess_dir(NAME).mkdir(parents=True)
    layout.preprocess_config(NAME).write_text("# PreprocessConfig\nsize: 256\n")


def outcome(capsys, code) -> str:
    """The one `error:` line a refused or stopped command printed (asserting it is one line, with exit code 2)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_every_config_option_takes_a_hostile_value_or_refuses_it_in_one_line(tmp_path, capsys):
    """`--set KEY=VALUE` for every option of the avatar's and the preprocessing's configs: NaN, ±inf, huge, zero,
    negative, fractional and non-numbers. A value taken goes on to the next step (the missing video of avatar
    'ghost'); one refused is one line naming the option, and nothing in the DATAROOT changes."""
    import typing

    from amg.config import AvatarConfig, PreprocessConfig, RenderConfig

    root = tmp_path / "root"
    a_dataroot_with_an_avatar(root)
    before = tree(root)
    taken = {}
    commands = {
        AvatarConfig: ["train", str(root), "ghost", "--stage", "gan"],
        PreprocessConfig: ["preprocess", str(root), "ghost"],
    }
    for cls, command in commands.items():
        for key in config_keys(cls):
            for value in HOSTILE:
                line = outcome(capsys, amg_main([*command, "--set", f"{key}={value}"]))
                if line.startswith("error: No video file for 'ghost'"):
                    taken.setdefault(key, []).append(value)
                else:
                    assert line.startswith("error: Config ") and "ghost" not in line, (key, value, line)
    assert tree(root) == before
    # Non-numbers, NaN, infinities and 10**30 are never taken by a numeric option (text, such as render.label, is
    # text whatever it spells).
    text = {f"render.{key}" for key, tp in typing.get_type_hints(RenderConfig).items() if tp is str}
    numbers = {key: values for key, values in taken.items() if key not in text}
    assert not {key: v for key, values in numbers.items() for v in values if v in ("nan", "inf", "-inf", str(10**30))}
    assert "0" in taken["gan.steps"] and "2.5" in taken["gan.candidate_hysteresis"]  # what makes sense is taken


@pytest.mark.parametrize("label", ["x" * 121, "two\nlines"])
def test_a_configured_label_no_frame_can_show_is_one_line(tmp_path, capsys, label):
    """render.label from --set (or a --config file) is checked as --label is: before anything runs."""
    root = tmp_path / "root"
    a_dataroot_with_an_avatar(root)
    before = tree(root)
    code = amg_main(["run", str(root), "ghost_speech", "ghost", "--set", f"render.label={label}"])
    assert outcome(capsys, code) == "error: Config render.label: printable text on one line, at most 120 characters."
    assert tree(root) == before


CLI_NUMBERS = {
    ("run", "{root}", "ghost_speech", "ghost"): (
        "--seed",
        "--temperature",
        "--intensity",
        "--blink-rate",
        "--max-minutes",
        "--upscale",
    ),
    ("motion", "{root}", "ghost_speech", "ghost"): ("--seed", "--temperature", "--intensity", "--blink-rate"),
    ("live", "{root}", "ghost", "--input", "ghost.wav"): (
        "--chunk-ms",
        "--lookahead",
        "--seed",
        "--temperature",
        "--intensity",
    ),
    ("eval", "{root}", "ghost"): ("--holdout", "--seed", "--max-minutes"),
    ("train", "{root}", "ghost"): ("--max-minutes",),
    ("preprocess", "{root}", "ghost"): ("--size",),
    ("serve", "{root}"): ("--port", "--workers", "--max-upload-mb", "--max-audio-s", "--live-idle-s"),
    ("batch", "{root}", "ghost.csv"): ("--workers",),
}


def test_every_numeric_option_of_the_command_line_takes_a_hostile_value_or_refuses_it_in_one_line(tmp_path, capsys):
    """Each numeric option of each command with NaN, ±inf, huge, zero, negative, fractional and non-numbers: a
    value taken goes on to the next step (a missing input, or the DATAROOT's server already running); one refused
    is argparse's one usage line naming the option; nothing in the DATAROOT changes."""
    from amg.service.lock import server_lock

    root = tmp_path / "root"
    a_dataroot_with_an_avatar(root)
    with server_lock(Layout(root), "http://127.0.0.1:1"):  # `amg serve` with a value it takes stops there
        before = tree(root)
        for command, options in CLI_NUMBERS.items():
            for option in options:
                for value in HOSTILE:
                    args = [arg.format(root=root) for arg in command] + [option, value]
                    try:
                        code = amg_main(args)
                    except SystemExit as exited:  # argparse's refusal
                        assert one_error_line(capsys).startswith(f"error: argument {option}: "), (args, value)
                        assert exited.code == 2
                        continue
                    line = outcome(capsys, code)
                    if line.startswith("error: Config "):  # --size: the crop size is the config's option
                        continue
                    assert value not in ("nan", "inf", "-inf", "1e308", str(10**30), "abc", ""), (args, line)
                    assert "ghost" in line or "already served" in line, (args, line)
        assert tree(root) == before
