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
            "error: argument --max-minutes: expected a positive number of minutes, got '-1' (see `amg train --help`).",
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
