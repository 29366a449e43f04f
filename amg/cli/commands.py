"""`amg` command line: parses arguments, builds configs, calls the stage functions. Nothing else lives here."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import signal
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from amg import __version__
from amg.config import (
    BLINK_MODES,
    FRAMINGS,
    LABEL,
    MAX_BLINK_RATE,
    MAX_LABEL_CHARS,
    MAX_POSE_SCALE,
    POSE_MODES,
    PRESETS,
    AvatarConfig,
    MotionOptions,
    PreprocessConfig,
    load_config,
    preset_overrides,
    read_saved_config,
    resolve_increments,
)
from amg.core.dataclass_io import MAX_FLOAT, MAX_INT
from amg.core.errors import AmgError
from amg.core.layout import Layout
from amg.core.precision import PRECISIONS
from amg.service.settings import ServiceSettings

log = logging.getLogger("amg")

# Bounds of the command line's own numeric options (the config's options follow amg.core.dataclass_io's rule).
MIN_CHUNK_MS, MAX_CHUNK_MS = 1, 1000  # a microphone's block: 1 ms is 16 samples, 1 s past any useful latency
MAX_LOOKAHEAD = 100  # frames (4 s): the lip-sync network itself sees 16
MAX_WORKERS = 256


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in AMG's one-line form (its default prints the usage before them)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`).\n")


def _checked_float(text: str, ok, expected: str) -> float:
    """`text` as a finite float for which `ok` holds, else argparse's one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _checked_int(text: str, low: int, high: int, expected: str) -> int:
    """`text` as an integer from `low` to `high`, else argparse's one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive(unit: str) -> Callable[[str], float]:
    """A positive number of `unit`, at most the config's MAX_FLOAT (beyond it a size or duration overflows)."""

    def positive(text: str) -> float:
        return _checked_float(
            text, lambda value: 0 < value <= MAX_FLOAT, f"a positive number of {unit} (at most {MAX_FLOAT:g})"
        )

    return positive


def _blink_rate(text: str) -> float:
    return _checked_float(
        text, lambda rate: 0 <= rate <= MAX_BLINK_RATE, f"a multiplier between 0 and {MAX_BLINK_RATE}"
    )


def _pose_scale(text: str) -> float:
    return _checked_float(text, lambda scale: 0 <= scale <= MAX_POSE_SCALE, f"a number from 0 to {MAX_POSE_SCALE}")


def _seed(text: str) -> int:
    return _checked_int(text, 0, MAX_INT, f"a whole number from 0 to {MAX_INT}")


def _holdout(text: str) -> float:
    return _checked_float(text, lambda fraction: 0 < fraction < 1, "a fraction between 0 and 1")


def _chunk_ms(text: str) -> float:
    return _checked_float(text, lambda ms: MIN_CHUNK_MS <= ms <= MAX_CHUNK_MS, f"{MIN_CHUNK_MS}-{MAX_CHUNK_MS} ms")


def _lookahead(text: str) -> int:
    return _checked_int(text, 0, MAX_LOOKAHEAD, f"0-{MAX_LOOKAHEAD} frames")


def _port(text: str) -> int:
    return _checked_int(text, 1, 65535, "a TCP port from 1 to 65535")


def _workers(text: str) -> int:
    return _checked_int(text, 1, MAX_WORKERS, f"1-{MAX_WORKERS} workers")


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AmgError(f"--set expects KEY=VALUE, got {pair!r}.")
        overrides[key.strip()] = value.strip()
    return overrides


def _existing_layout(dataroot: str) -> Layout:
    """The DATAROOT of a command that reads inputs from it (a typo there would otherwise read as missing files)."""
    layout = Layout(dataroot)
    if not layout.root.is_dir():
        raise AmgError(f"DATAROOT {layout.root} does not exist (it holds input_data/, checkpoints/, output_data/).")
    return layout


def _add_framing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--framing",
        choices=FRAMINGS,
        help="source (default): the avatar video's own frame size, the generated head over real frames that "
        "follow its body; crop: the generator's square crop alone",
    )


def _add_label_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--label", metavar="TEXT", help=f"the visible label on every frame (default: {LABEL!r})")
    group.add_argument(
        "--no-label",
        action="store_true",
        help="no visible label (the invisible watermark and the file's C2PA "
        "manifest and metadata still mark the video as generated)",
    )


def _label(args: argparse.Namespace, configured: str) -> str:
    """The label the flags ask for ("" for none), else the configured one."""
    label = "" if args.no_label else (args.label if args.label is not None else configured)
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise AmgError(f"--label: printable text on one line, at most {MAX_LABEL_CHARS} characters.")
    return label


def _add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="number format of training and rendering: auto (bf16 on a CPU with a bf16 matrix engine or on a GPU, "
        "else fp32; the default), fp32, bf16, fp16",
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="YAML file of options overriding the defaults")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override one option (repeatable)"
    )


def cmd_preprocess(args: argparse.Namespace) -> None:
    from amg.tracking.preprocess import preprocess

    overrides = _parse_overrides(args.set)
    if args.size is not None:  # --size wins over --set size=
        overrides["size"] = args.size
    layout = _existing_layout(args.dataroot)
    # Options not given keep the values the video was preprocessed with (as `amg run` does): a re-run without
    # --size must not redo a 512-px avatar at 256 and leave its trained models behind.
    saved = read_saved_config(PreprocessConfig, layout.preprocess_config(args.video_name))
    cfg = load_config(PreprocessConfig, args.config, asdict(saved) if saved else None, **overrides)
    report = preprocess(layout, args.video_name, cfg, force=args.force)
    err = report["reconstruction_px"]
    print(
        f"Preprocessed {args.video_name!r}: {report['frames']} frames, face tracked in "
        f"{report['tracked_fraction']:.1%}, landmark reconstruction error {err['mean_px']:.2f} px "
        f"(p95 {err['p95_px']:.2f}) at {cfg.size} px. Outputs in {layout.preprocess_dir(args.video_name)}"
    )


def _avatar_config(args: argparse.Namespace, layout: Layout, name: str) -> AvatarConfig:
    """The preset's settings, then the YAML file, then --set (keys like gan.steps or motion.expression.steps;
    `gan.steps=+500`: 500 more than avatar `name` was trained with)."""
    from amg.stages import saved_stage_config

    overrides = resolve_increments(
        _parse_overrides(args.set), lambda section: saved_stage_config(layout, name, section)
    )
    if args.precision:  # the flag sets training's and rendering's precision alike
        overrides |= {"precision": args.precision, "render.precision": args.precision}
    return load_config(AvatarConfig, args.config, preset_overrides(args.preset), **overrides)


def _motion_summary(report: dict) -> list[str]:
    lines = []
    if expression := report.get("audio2expression"):
        lines.append(
            f"Audio→Expression on the held-out tail: lip error {expression['lips_px']:.2f} px, "
            f"mouth-opening correlation {expression['opening_corr']:.2f}"
        )
    if eyes := report.get("eyes"):
        lines.append(
            f"Eye model: {eyes['blink_shapes']} blinks learned, {eyes['tracked_blinks_per_minute']:.1f} per "
            f"minute in the video (blink more in pauses: ×{eyes['pause_gain']:.2f})"
        )
    return lines


def _gan_summary(report: dict) -> list[str]:
    if not (m := report.get("metrics")):
        return []
    return [
        f"Image GAN on held-out frames: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, mouth PSNR "
        f"{m['mouth_psnr']:.2f} dB; baselines from the nearest training frame: copied "
        f"{m['copy_psnr']:.2f} dB, {m['copy_ssim']:.3f}; mesh-warped {m['warp_psnr']:.2f} dB, {m['warp_ssim']:.3f}"
    ]


def _enhance_summary(m: dict) -> list[str]:
    if not m:
        return []
    return [
        f"Face refiner on held-out frames: face PSNR {m['refined_psnr']:.2f} dB / SSIM {m['refined_ssim']:.3f} "
        f"(upsampled generator output: {m['upsampled_psnr']:.2f} dB / {m['upsampled_ssim']:.3f}); mouth "
        f"sharpness {m['refined_mouth_sharpness']:.0f} (upsampled {m['upsampled_mouth_sharpness']:.0f}, "
        f"real {m['real_mouth_sharpness']:.0f})"
    ]


# What `amg train --stage X` trains, and how each stage's report is summed up.
TRAIN_CHOICES = {"all": ("motion", "gan"), "motion": ("motion",), "gan": ("gan",), "enhance": ("enhance",)}
SUMMARIES = {"motion": _motion_summary, "gan": _gan_summary, "enhance": _enhance_summary}
DATA_PARALLEL = ("gan", "enhance")  # the stages torchrun may train on several ranks


def cmd_train(args: argparse.Namespace) -> None:
    from amg.core.distributed import init_distributed, shutdown_distributed

    world = init_distributed()  # under torchrun (see amg.core.distributed); one rank otherwise
    try:
        _train(args, world)
    finally:
        shutdown_distributed()


def _train(args: argparse.Namespace, world) -> None:
    from amg.core.distributed import barrier
    from amg.pipeline import preprocess_avatar
    from amg.stages import train_stages

    if world.distributed and args.stage not in DATA_PARALLEL:
        raise AmgError(
            f"torchrun trains --stage {' or '.join(DATA_PARALLEL)} on several ranks; the motion models are "
            "small and train in one process: `amg train ... --stage motion` first."
        )
    layout = _existing_layout(args.dataroot)
    cfg = _avatar_config(args, layout, args.video_name)
    if world.main:
        preprocess_avatar(layout, args.video_name)
    barrier()
    wanted = TRAIN_CHOICES[args.stage]
    reports = train_stages(layout, args.video_name, cfg, lambda s: s.name in wanted, args.force, args.max_minutes)
    # The ranks leave together: one that tears down its process group while rank 0 still evaluates can abort
    # inside gloo (seen once in CI as SIGABRT on rank 1).
    barrier()
    if not world.main:
        return
    for name, report in reports.items():
        for line in SUMMARIES[name](report):
            print(line)
    if not reports:
        print(f"Nothing to train: {', '.join(wanted)} of {args.video_name!r} already trained as configured.")
    print(f"Models of {args.video_name!r} are in {layout.checkpoint_dir(args.video_name)}")


def _motion_options(args: argparse.Namespace):
    return MotionOptions(args.pose, args.seed, args.temperature, args.intensity, args.blinks, args.blink_rate)


def cmd_run(args: argparse.Namespace) -> None:
    from amg.pipeline import run

    layout = _existing_layout(args.dataroot)
    cfg = _avatar_config(args, layout, args.video_name)
    # The flags win over the config's render section (render.framing, ...) when given.
    upscale = args.upscale or cfg.render.upscale
    render_cfg = replace(
        cfg.render,
        framing=args.framing or cfg.render.framing,
        enhance=args.enhance or cfg.render.enhance or upscale > 1,
        upscale=upscale,
        label=_label(args, cfg.render.label),
    )
    path, trained = run(
        layout, args.audio_name, args.video_name, cfg, _motion_options(args), render_cfg, args.max_minutes
    )
    print(f"Trained: {', '.join(trained) if trained else 'nothing (every checkpoint was there)'}")
    print(f"Generated video: {path}")
    if render_cfg.enhance:
        print(f"With the face refined: {layout.generated_superes(args.audio_name, args.video_name)}")


def cmd_motion(args: argparse.Namespace) -> None:
    from amg.motion.inference import predict_motion, write_motion_preview

    layout = _existing_layout(args.dataroot)
    motion = predict_motion(layout, args.audio_name, args.video_name, _motion_options(args))
    preview = write_motion_preview(layout, args.audio_name, args.video_name, motion)
    print(f"{motion.n_frames} frames of motion in {layout.motion_tracks(args.audio_name, args.video_name)}")
    print(f"Preview: {preview}")


def cmd_live(args: argparse.Namespace) -> None:
    import contextlib

    from amg.config import LiveConfig
    from amg.live import LiveSession, chunks_in_real_time, microphone_chunks, run_live, video_recorder
    from amg.media import load_audio
    from amg.media.provenance import Provenance

    layout = _existing_layout(args.dataroot)
    cfg = LiveConfig(
        lookahead=args.lookahead,
        precision=args.precision or "auto",
        framing=args.framing or "source",
        native_detail=args.native_detail,
        label=_label(args, LABEL),
    )
    chunks = (
        microphone_chunks(args.chunk_ms)
        if args.input == "mic"
        else chunks_in_real_time(load_audio(_input_file(args.input)), args.chunk_ms)
    )
    with contextlib.ExitStack() as stack:
        if args.output == "window":
            on_frame = _window_player(stack)
        else:
            writer, on_frame = video_recorder(Path(args.output), Provenance.new(args.video_name, args.input))
            stack.enter_context(writer)
        session = LiveSession(layout, args.video_name, on_frame, _motion_options(args), cfg)
        width, height = session.frame_size
        print(
            f"Live: {args.video_name}, {width}x{height} frames (generated at {session.size} px), "
            f"{cfg.lookahead} frames of look-ahead. Ctrl-C ends."
        )
        run_live(session, chunks)
    print(f"{session.dropped} frames dropped to keep up.")
    if args.output != "window":
        print(f"Recorded: {args.output}")


def _input_file(name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise AmgError(f"No speech file {name} (use --input mic for the microphone).")
    return path


def _window_player(stack) -> Callable:
    """`--output window`: each frame shown as it comes (OpenCV's window; needs a display)."""
    import cv2

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.name != "nt":
        raise AmgError("No display for --output window: record with --output FILE.mp4 instead.")
    stack.callback(cv2.destroyAllWindows)

    def show(frame) -> None:
        cv2.imshow("amg live", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)

    return show


def cmd_eval(args: argparse.Namespace) -> None:
    from amg.evaluation.records import EvalOptions
    from amg.evaluation.report import summary_table
    from amg.pipeline import evaluate_avatar

    layout = _existing_layout(args.dataroot)
    cfg = _avatar_config(args, layout, args.video_name)
    options = EvalOptions(
        holdout=args.holdout,
        audios=tuple(args.audio),
        seed=args.seed,
        enhance=args.enhance,
        engine=cfg.render.engine,
        precision=cfg.render.precision,
        native_detail=cfg.render.native_detail,
    )
    report = evaluate_avatar(layout, args.video_name, cfg, options, args.max_minutes)
    print(summary_table(report))
    print(f"Report: {layout.eval_html(args.video_name)}")


def cmd_verify(args: argparse.Namespace) -> int:
    import json

    from amg.media.verify import verify_video

    path = Path(args.file)
    if not path.is_file():
        raise AmgError(f"No file {path}.")
    result = verify_video(path)
    print(json.dumps(result.as_dict(), indent=2, default=str) if args.json else "\n".join(result.lines()))
    return 0 if result.found else 1  # found: 0, not found: 1 (a bad file is an AmgError: 2)


def cmd_serve(args: argparse.Namespace) -> None:
    from amg.service.app import serve

    layout = _existing_layout(args.dataroot)  # a typo must not start a server on a new, empty DATAROOT
    settings = ServiceSettings(
        max_upload_mb=args.max_upload_mb,
        max_audio_s=args.max_audio_s,
        live_idle_s=args.live_idle_s,
        workers=args.workers,
        precision=args.precision or "auto",
        allowed_origins=tuple(args.allow_origin),
    )
    serve(layout.root, args.host, args.port, settings, args.ray)


def cmd_batch(args: argparse.Namespace) -> None:
    from amg.service.batch import batch_runner, read_manifest, render_manifest

    layout = _existing_layout(args.dataroot)
    rows = read_manifest(Path(args.manifest))
    runner = batch_runner(layout, args.workers, args.ray)
    try:
        done, skipped = render_manifest(layout, rows, args.workers, runner)
    finally:
        runner.close()
    print(f"Rendered {done}, already there {skipped}, of {len(rows)} in {args.manifest}.")


def cmd_sample(args: argparse.Namespace) -> None:
    from amg.cli.samples import install_samples

    layout = Layout(args.dataroot)  # made if missing: this is how a newcomer's first DATAROOT comes to be
    if layout.root.exists() and not layout.root.is_dir():
        raise AmgError(f"DATAROOT {layout.root} is a file: give the path of a folder (a new one is made).")
    names = install_samples(layout)
    print(f"Sample inputs in {layout.root / 'input_data'}: {', '.join(names)}")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="default",
        help="fast: minutes, for demos and tests; default: a usable avatar in under 2 h on 2 CPU cores; "
        "quality: a GPU overnight",
    )
    _add_precision_option(parser)
    parser.add_argument(
        "--max-minutes", type=_positive("minutes"), help="stop image-GAN training after this long (resumable)"
    )
    _add_config_options(parser)


def _add_speech_and_avatar(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataroot")
    parser.add_argument("audio_name", help="name of the speech in DATAROOT/input_data/audio/NAME/")
    parser.add_argument("video_name", help="the avatar: DATAROOT/input_data/video/NAME/")


def _add_motion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pose",
        choices=POSE_MODES,
        default="generate",
        help="head motion: generated from the audio, held still, or replayed from the video",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="sampling seed of the head motion and the blinks")
    parser.add_argument(
        "--temperature", type=_pose_scale, default=1.0, help="head-motion randomness (0: most likely; up to 5)"
    )
    parser.add_argument("--intensity", type=_pose_scale, default=1.0, help="head-motion amplitude scale (0-5)")
    parser.add_argument(
        "--blinks",
        choices=BLINK_MODES,
        default="natural",
        help="natural: blink as often as the person does in the avatar video; off: never",
    )
    parser.add_argument(
        "--blink-rate",
        type=_blink_rate,
        default=1.0,
        help=f"multiplies the avatar's own blink rate (0-{MAX_BLINK_RATE}; 1: as in its video)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="amg", description="AMG: audio-driven talking-person avatars.")
    parser.add_argument("--version", action="version", version=f"amg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("preprocess", help="track an avatar video (stage 1)")
    pre.add_argument("dataroot", help="data folder (input_data/, checkpoints/, output_data/)")
    pre.add_argument("video_name", help="name of the video in DATAROOT/input_data/video/NAME/NAME.mp4")
    pre.add_argument("--size", type=int, help="crop resolution (default: as before, else the source's own, 256 to 512)")
    pre.add_argument("--force", action="store_true", help="redo cached work")
    _add_config_options(pre)
    pre.set_defaults(func=cmd_preprocess)

    train = sub.add_parser("train", help="train an avatar's models (preprocessing the video first if needed)")
    train.add_argument("dataroot")
    train.add_argument("video_name")
    train.add_argument(
        "--stage",
        choices=list(TRAIN_CHOICES),
        default="all",
        help="which models to train: all = motion + gan (what `amg run` needs); enhance = the optional face "
        "refiner (stage 6, needs the gan)",
    )
    train.add_argument("--force", action="store_true", help="retrain even if finished checkpoints exist")
    _add_training_options(train)
    train.set_defaults(func=cmd_train)

    run = sub.add_parser("run", help="speech + avatar video → generated video (trains what is missing first)")
    _add_speech_and_avatar(run)
    _add_framing_option(run)
    # Kept for scripts written before --framing: the source frame is the default now.
    run.add_argument("--full-frame", dest="framing", action="store_const", const="source", help=argparse.SUPPRESS)
    run.add_argument(
        "--enhance",
        action="store_true",
        help="also write generated_superes.mp4 with the face refined (trains the refiner if missing; with today's "
        "generator it measures worse than the plain video: docs/enhance.md)",
    )
    run.add_argument(
        "--upscale",
        type=int,
        choices=[1, 2, 3, 4],
        help="generated_superes.mp4 at this multiple of the generator's size (implies --enhance)",
    )
    _add_motion_options(run)
    _add_training_options(run)
    _add_label_options(run)
    run.set_defaults(func=cmd_run)

    motion = sub.add_parser("motion", help="predict expression, head pose and body for a speech file")
    _add_speech_and_avatar(motion)
    _add_motion_options(motion)
    motion.set_defaults(func=cmd_motion)

    live = sub.add_parser("live", help="speak (or stream a file) and watch the avatar answer in real time")
    live.add_argument("dataroot")
    live.add_argument("video_name", help="a trained avatar")
    live.add_argument(
        "--input", default="mic", help="mic (the default microphone) or a speech file played in real time"
    )
    live.add_argument("--output", default="window", help="window, or FILE.mp4 to record the stream with its sound")
    live.add_argument("--chunk-ms", type=_chunk_ms, default=80.0, help="audio chunk size (a microphone's block)")
    live.add_argument(
        "--lookahead", type=_lookahead, default=8, help="frames of speech seen past each frame (latency +40 ms each)"
    )
    _add_framing_option(live)
    live.add_argument(
        "--native-detail",
        action="store_true",
        help="the face at the source's resolution where the crop holds fewer pixels, as amg run's (slower)",
    )
    _add_motion_options(live)
    _add_precision_option(live)
    _add_label_options(live)
    live.set_defaults(func=cmd_live)

    evaluate = sub.add_parser(
        "eval", help="train on the first part of a video, render its held-out tail, compare with the real one"
    )
    evaluate.add_argument("dataroot")
    evaluate.add_argument("video_name")
    evaluate.add_argument("--holdout", type=_holdout, default=0.15, help="fraction of the video held out (its tail)")
    evaluate.add_argument(
        "--audio",
        action="append",
        default=[],
        metavar="AUDIO_NAME",
        help="also drive the avatar with this speech (no ground truth; repeatable)",
    )
    evaluate.add_argument("--seed", type=_seed, default=0, help="head-motion sampling seed")
    evaluate.add_argument("--enhance", action="store_true", help="also measure the face refiner's output")
    _add_training_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    service = sub.add_parser("serve", help="HTTP API and web page: upload speech, pick an avatar, watch the result")
    service.add_argument("dataroot")
    service.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    service.add_argument("--port", type=_port, default=8000)
    service.add_argument("--workers", type=_workers, default=1, help="jobs (and live streams) run at once")
    service.add_argument("--max-upload-mb", type=_positive("MB"), default=50.0, help="largest speech upload")
    service.add_argument(
        "--max-audio-s", type=_positive("seconds"), default=600.0, help="longest speech a job may render"
    )
    service.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page's origin (https://example.org) that may use the service besides its own (repeatable)",
    )
    service.add_argument(
        "--live-idle-s",
        type=_positive("seconds"),
        default=ServiceSettings.live_idle_s,
        help="a live stream that sends no speech for this long is closed, freeing its slot",
    )
    service.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run jobs on Ray actors (--workers of them): a local Ray, or the cluster at ADDRESS ('auto': this "
        "machine's); DATAROOT must be at the same path on every node",
    )
    _add_precision_option(service)
    service.set_defaults(func=cmd_serve)

    batch = sub.add_parser("batch", help="render every (speech, avatar) row of a CSV manifest; resumable")
    batch.add_argument("dataroot")
    batch.add_argument(
        "manifest", help="CSV with columns audio,avatar (names in DATAROOT) and optionally seed,blinks,blink_rate,pose"
    )
    batch.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="on Ray actors, as `amg serve --ray`")
    batch.add_argument("--workers", type=_workers, default=1, help="renders at once (Ray actors with --ray)")
    batch.set_defaults(func=cmd_batch)

    sample = sub.add_parser("sample", help="put the sample media shipped with the installed packages in DATAROOT")
    sample.add_argument("dataroot")
    sample.set_defaults(func=cmd_sample)

    verify = sub.add_parser(
        "verify", help="does a video carry AMG's watermark, C2PA manifest or metadata? (exit 0: yes, 1: no)"
    )
    verify.add_argument("file", help="a video file")
    verify.add_argument("--json", action="store_true", help="print the findings as JSON")
    verify.set_defaults(func=cmd_verify)
    return parser


# errno values that mean the disk, the user's quota or the file size limit is full.
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_ACCESS_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _os_error_line(exc: OSError) -> str | None:
    """The one line for a system error the user can act on (a full disk, a folder AMG may not write); None for
    any other, which is a bug to report with its traceback."""
    if exc.errno in _FULL_DISK:
        where = f" in {Path(exc.filename).parent}" if exc.filename else ""
        return (
            f"could not write{where} ({exc.strerror}): free some space and run the same command again (what was "
            "finished is kept; nothing was left half-written)."
        )
    if exc.errno in _ACCESS_DENIED and exc.filename is not None:
        return _access_denied(exc)
    return None


def _access_denied(exc: OSError) -> str:
    """One line for a file AMG may not read or write: the folder to fix is the nearest one that exists."""
    path = Path(exc.filename)
    if path.exists():
        return f"{path} cannot be accessed ({exc.strerror}): give yourself access to it, or use another DATAROOT."
    folder = next(p for p in path.parents if p.exists())
    return f"cannot write in the folder {folder} ({exc.strerror}): make it writable, or use another DATAROOT."


def _quiet_native_stderr() -> None:
    """Send what C++ libraries print straight to the process's stderr to /dev/null, keeping Python's sys.stderr
    (logging, progress bars, errors) on the terminal. MediaPipe and TFLite log there lines that read like errors
    ("Feedback manager requires a model with a single signature", "Using NORM_RECT without IMAGE_DIMENSIONS")
    and heed no environment variable; `-v` shows them."""
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding=sys.stderr.encoding)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only a process's own stderr: not one a caller replaced (a test's capture), nor twice.
    if not args.verbose and sys.stderr is sys.__stderr__:
        _quiet_native_stderr()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    # SIGTERM (a `kill`, a service manager stopping the job) unwinds like Ctrl-C, so that partial files are
    # deleted by the same `finally` blocks.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = args.func(args) or 0  # a command may answer with its own status (amg verify: 1 when not found)
    except AmgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        line = _os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt
