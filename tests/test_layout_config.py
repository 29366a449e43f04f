import pytest

from amg.config import PreprocessConfig, load_config, read_saved_config, save_config
from amg.core.errors import AmgError
from amg.core.layout import Layout, validate_name


@pytest.mark.parametrize("name", ["obama", "clip_2", "a.b-c", "X9"])
def test_valid_names_pass(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "..", "../etc", "a/b", "a\\b", "/abs", ".hidden", "na..me", "ｏbama", "é", "a" * 129]
)
def test_unsafe_names_are_rejected(name):
    with pytest.raises(AmgError):
        validate_name(name)


def test_layout_paths_follow_the_contract(tmp_path):
    layout = Layout(tmp_path)
    assert layout.video_dir("v") == tmp_path / "input_data" / "video" / "v"
    assert layout.audio_dir("a") == tmp_path / "input_data" / "audio" / "a"
    assert layout.checkpoint_dir("v") == tmp_path / "checkpoints" / "v"
    assert layout.output_dir("a", "v") == tmp_path / "output_data" / "a_to_v"
    assert layout.tracks("v").parent == layout.preprocess_dir("v")
    with pytest.raises(AmgError):
        layout.output_dir("../x", "v")


def test_media_lookup_accepts_other_formats_and_explains_when_missing(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(AmgError, match="No video file for 'v'"):
        layout.video_source("v")
    layout.video_dir("v").mkdir(parents=True)
    (layout.video_dir("v") / "v.mov").write_bytes(b"x")
    assert layout.video_source("v").name == "v.mov"


def test_config_layers_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("size: 512\nrefine_landmarks: false\n")
    cfg = load_config(PreprocessConfig, path, pose_every="3", size=None)
    assert (cfg.size, cfg.refine_landmarks, cfg.pose_every) == (512, False, 3)
    with pytest.raises(AmgError, match="Unknown PreprocessConfig option"):
        load_config(PreprocessConfig, None, sise=5)
    with pytest.raises(AmgError, match="expected int"):
        load_config(PreprocessConfig, None, size="big")
    saved = tmp_path / "saved.yaml"
    save_config(cfg, saved)
    assert read_saved_config(PreprocessConfig, saved) == cfg


def test_atomic_writes_leave_no_temporary_and_use_normal_permissions(tmp_path):
    import os

    from amg.core.fsutil import atomic_path, write_text

    write_text(tmp_path / "a.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
