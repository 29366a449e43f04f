"""The DATAROOT contract: every path AMG reads or writes is named here and nowhere else.

    DATAROOT/input_data/audio/NAME/NAME.wav     driving speech (+ its cached features beside it)
    DATAROOT/input_data/video/NAME/NAME.mp4     avatar video (+ its preprocessed tracks beside it)
    DATAROOT/checkpoints/NAME/                  everything a trained avatar needs
    DATAROOT/output_data/AUDIO_to_VIDEO/        rendered results
    DATAROOT/output_data/eval_VIDEO/            `amg eval`'s report on avatar VIDEO
    DATAROOT/service/                           `amg serve`'s job queue and the uploads in flight

Inputs in other common formats (NAME.mov, NAME.mp3, ...) are accepted; stages normalise them on the way in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from amg.core.errors import AmgError, DamagedFileError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".ts")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus", ".wma") + VIDEO_EXTENSIONS

# A speech's and an avatar's names make their output folder's, AUDIO_to_VIDEO, and a folder's name has at most 255
# bytes on every common file system: 120 + 4 + 120.
MAX_NAME = 120
_NAME_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}$")
SHOWN_NAME = 60  # characters of an invalid name an error message quotes


def validate_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a safe single path component, else raise AmgError.

    Allowed: ASCII letters, digits, '.', '_', '-', starting with a letter or digit, at most MAX_NAME characters.
    This rules out path traversal ('..', '/', '\\'), absolute paths, empty names and look-alike unicode.
    """
    if not isinstance(name, str) or not name:
        raise AmgError(f"The {what} is empty.")
    if unicodedata.normalize("NFKC", name) != name or not _NAME_RE.match(name) or ".." in name:
        shown = name if len(name) <= SHOWN_NAME else f"{name[:SHOWN_NAME]}... ({len(name)} characters)"
        raise AmgError(
            f"Invalid {what} {shown!r}: use 1-{MAX_NAME} ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no path separators, no '..')."
        )
    return name


# `amg train --stage S` rebuilds each checkpoint file; `amg preprocess` rebuilds everything under processed/.
_TRAINING_STAGE_OF = {
    "audio2expression.pt": "motion",
    "audio2headpose.pt": "motion",
    "head2body.npz": "motion",
    "pose2face.npz": "motion",
    "latest_GAN_model.pt": "gan",
    "gan_references.npz": "gan",
    "face_enhancer.pt": "enhance",
}


def rebuild_command(path: Path) -> str:
    """What to run to make the file at `path` again (the advice a damaged file's error gives)."""
    path = Path(path)
    if path.parent.name == "processed":  # DATAROOT/input_data/video/NAME/processed/FILE
        return f"re-run `amg preprocess {path.parents[4]} {path.parents[1].name} --force`"
    stage = _TRAINING_STAGE_OF.get(path.name)
    if stage is not None:  # DATAROOT/checkpoints/NAME/FILE
        return f"retrain with `amg train {path.parents[2]} {path.parent.name} --stage {stage} --force`"
    return "delete it and run the command again"


def damaged_file(path: Path, exc: BaseException) -> DamagedFileError:
    """The error for a file AMG made that cannot be read any more, saying how to make it again."""
    return DamagedFileError(
        path, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, rebuild_command(path)
    )


def _find_media(folder: Path, name: str, extensions: tuple[str, ...], kind: str) -> Path:
    for ext in extensions:
        for candidate in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    raise AmgError(
        f"No {kind} file for {name!r}: expected {folder / (name + extensions[0])} "
        f"(or another of {', '.join(extensions)})."
    )


@dataclass(frozen=True)
class Layout:
    """Paths under one DATAROOT."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    # --- inputs -------------------------------------------------------------------------------------
    def videos_dir(self) -> Path:
        """The folder of every avatar video's own folder (one subfolder per video name)."""
        return self.root / "input_data" / "video"

    def video_dir(self, name: str) -> Path:
        return self.videos_dir() / validate_name(name, "video name")

    def audio_dir(self, name: str) -> Path:
        return self.root / "input_data" / "audio" / validate_name(name, "audio name")

    def video_source(self, name: str) -> Path:
        """The user's avatar video, in whatever common container it came in."""
        return _find_media(self.video_dir(name), name, VIDEO_EXTENSIONS, "video")

    def audio_source(self, name: str) -> Path:
        """The user's driving speech: any common audio file, or a video whose audio track is used."""
        return _find_media(self.audio_dir(name), name, AUDIO_EXTENSIONS, "audio")

    # --- preprocessed avatar video (stage 1) --------------------------------------------------------
    def preprocess_dir(self, name: str) -> Path:
        """Per-input processed data lives beside the input, in a subfolder so it never shadows it."""
        return self.video_dir(name) / "processed"

    def frames_video(self, name: str) -> Path:
        """The avatar video cropped to the fixed window, resized, at 25 fps, with 16 kHz mono audio."""
        return self.preprocess_dir(name) / "frames.mp4"

    def matte_video(self, name: str) -> Path:
        return self.preprocess_dir(name) / "matte.mp4"

    def audio_wav(self, name: str) -> Path:
        """The avatar video's own speech, 16 kHz mono."""
        return self.preprocess_dir(name) / "audio.wav"

    def raw_tracks(self, name: str) -> Path:
        return self.preprocess_dir(name) / "raw_tracks.npz"

    def tracks(self, name: str) -> Path:
        return self.preprocess_dir(name) / "tracks.npz"

    def face_model(self, name: str) -> Path:
        return self.preprocess_dir(name) / "face_model.npz"

    def background(self, name: str) -> Path:
        return self.preprocess_dir(name) / "background.png"

    def tracking_preview(self, name: str) -> Path:
        return self.preprocess_dir(name) / "tracking_preview.mp4"

    def preprocess_report(self, name: str) -> Path:
        return self.preprocess_dir(name) / "report.json"

    def preprocess_config(self, name: str) -> Path:
        return self.preprocess_dir(name) / "preprocess_config.yaml"

    # --- trained avatars and results ----------------------------------------------------------------
    def checkpoints_dir(self) -> Path:
        """The folder of every avatar's checkpoint folder (one subfolder per avatar name)."""
        return self.root / "checkpoints"

    def checkpoint_dir(self, name: str) -> Path:
        return self.checkpoints_dir() / validate_name(name, "avatar name")

    def audio2expression(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "audio2expression.pt"

    def audio2headpose(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "audio2headpose.pt"

    def head2body(self, name: str) -> Path:
        """The head→body regressor's arrays and config (npz, not the seed's pickle: loading never runs code)."""
        return self.checkpoint_dir(name) / "head2body.npz"

    def pose2face(self, name: str) -> Path:
        """What head pose does to the face away from the lips (amg.motion.pose2face)."""
        return self.checkpoint_dir(name) / "pose2face.npz"

    def eye_model(self, name: str) -> Path:
        """Blinks, brows and gaze (amg.motion.eyes), fitted on the avatar's tracks."""
        return self.checkpoint_dir(name) / "eyes.npz"

    def motion_models(self, name: str) -> dict[str, Path]:
        """Each motion model's file, keyed by its MotionConfig section."""
        return {
            "expression": self.audio2expression(name),
            "pose": self.audio2headpose(name),
            "body": self.head2body(name),
            "pose2face": self.pose2face(name),
            "eyes": self.eye_model(name),
        }

    def head2body_plot(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "head2body_test.png"

    def motion_config(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "motion_config.yaml"

    def motion_report(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "motion_report.json"

    def gan_checkpoint(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "latest_GAN_model.pt"

    def gan_config(self, name: str) -> Path:
        """The generator's options (the seed's GAN_config.txt, as YAML)."""
        return self.checkpoint_dir(name) / "GAN_config.yaml"

    def gan_int8(self, name: str) -> Path:
        """The generator quantized to int8 for `render.engine: int8` (made on its first use, keyed to the
        checkpoint: amg.gan.inference)."""
        return self.checkpoint_dir(name) / "generator_int8.onnx"

    def gan_references(self, name: str) -> Path:
        """The avatar's reference frames and head-pose frame bank the generator copies texture from."""
        return self.checkpoint_dir(name) / "gan_references.npz"

    def gan_samples_dir(self, name: str) -> Path:
        """Training sample grids: conditioning | generated | real."""
        return self.checkpoint_dir(name) / "gan_samples"

    def gan_report(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "gan_report.json"

    def enhance_checkpoint(self, name: str) -> Path:
        """Stage 6's face refiner (with its config inside, and `enhance_config.yaml` beside it)."""
        return self.checkpoint_dir(name) / "face_enhancer.pt"

    def enhance_config(self, name: str) -> Path:
        return self.checkpoint_dir(name) / "enhance_config.yaml"

    def enhance_samples_dir(self, name: str) -> Path:
        """Training sample grids: generator output | refined | real face."""
        return self.checkpoint_dir(name) / "enhance_samples"

    def logs_dir(self, name: str) -> Path:
        """TensorBoard logs of every training stage of avatar `name`."""
        return self.checkpoint_dir(name) / "logs"

    def output_dir(self, audio_name: str, video_name: str) -> Path:
        validate_name(audio_name, "audio name")
        validate_name(video_name, "video name")
        return self.root / "output_data" / f"{audio_name}_to_{video_name}"

    def motion_tracks(self, audio_name: str, video_name: str) -> Path:
        """Predicted per-frame expression, pose and body for the audio: the renderer's input."""
        return self.output_dir(audio_name, video_name) / "motion.npz"

    def motion_preview(self, audio_name: str, video_name: str) -> Path:
        return self.output_dir(audio_name, video_name) / "motion_preview.mp4"

    def generated_video(self, audio_name: str, video_name: str) -> Path:
        return self.output_dir(audio_name, video_name) / "generated_video.mp4"

    def generated_superes(self, audio_name: str, video_name: str) -> Path:
        """The same video with the face refined by stage 6 (the seed's name for its GFPGAN output)."""
        return self.output_dir(audio_name, video_name) / "generated_superes.mp4"

    def eval_dir(self, video_name: str) -> Path:
        """`amg eval`'s report, plots and side-by-side videos for avatar `video_name`."""
        return self.root / "output_data" / f"eval_{validate_name(video_name, 'video name')}"

    def eval_report(self, video_name: str) -> Path:
        return self.eval_dir(video_name) / "report.json"

    def eval_html(self, video_name: str) -> Path:
        return self.eval_dir(video_name) / "report.html"

    def eval_video(self, video_name: str, label: str) -> Path:
        """Side by side with the speech: `held_out` (real | generated | baseline | conditioning) or a
        cross-driving audio's name (generated | baseline | conditioning)."""
        return self.eval_dir(video_name) / f"{validate_name(label, 'audio name')}.mp4"

    # --- the service (`amg serve`) ------------------------------------------------------------------
    def service_dir(self) -> Path:
        """What `amg serve` keeps beside the data it shares with the command line."""
        return self.root / "service"

    def server_lock(self) -> Path:
        """Held by the one `amg serve` of this DATAROOT (two would run each other's jobs); holds its PID."""
        return self.service_dir() / "server.lock"

    def job_database(self) -> Path:
        """`amg serve`'s job queue (SQLite): it survives a restart."""
        return self.service_dir() / "jobs.sqlite3"

    def upload(self, upload_id: str) -> Path:
        """An upload to `amg serve` while it streams in and is checked, before it is moved into place or
        refused (then deleted)."""
        return self.service_dir() / "uploads" / validate_name(upload_id, "upload id")
