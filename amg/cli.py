"""`amg` command line: parses arguments, builds configs, calls the stage functions. Nothing else lives here."""

from __future__ import annotations

import argparse
import logging
import sys

from amg import __version__
from amg.config import PreprocessConfig, load_config
from amg.errors import AmgError
from amg.layout import Layout

log = logging.getLogger("amg")


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AmgError(f"--set expects KEY=VALUE, got {pair!r}.")
        overrides[key.strip()] = value.strip()
    return overrides


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="YAML file of options overriding the defaults")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override one option (repeatable)"
    )


def cmd_preprocess(args: argparse.Namespace) -> None:
    from amg.tracking.preprocess import preprocess

    overrides = _parse_overrides(args.set)
    overrides["size"] = args.size
    cfg = load_config(PreprocessConfig, args.config, **overrides)
    report = preprocess(Layout(args.dataroot), args.video_name, cfg, force=args.force)
    err = report["reconstruction_px"]
    print(
        f"Preprocessed {args.video_name!r}: {report['frames']} frames, face tracked in "
        f"{report['tracked_fraction']:.1%}, landmark reconstruction error {err['mean_px']:.2f} px "
        f"(p95 {err['p95_px']:.2f}) at {cfg.size} px. Outputs in {Layout(args.dataroot).preprocess_dir(args.video_name)}"
    )


def cmd_sample(args: argparse.Namespace) -> None:
    from amg.samples import install_samples

    names = install_samples(Layout(args.dataroot))
    print(f"Sample inputs in {Layout(args.dataroot).root / 'input_data'}: {', '.join(names)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amg", description="AMG: audio-driven talking-person avatars.")
    parser.add_argument("--version", action="version", version=f"amg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("preprocess", help="track an avatar video (stage 1)")
    pre.add_argument("dataroot", help="data folder (input_data/, checkpoints/, output_data/)")
    pre.add_argument("video_name", help="name of the video in DATAROOT/input_data/video/NAME/NAME.mp4")
    pre.add_argument("--size", type=int, help="crop resolution (default 256)")
    pre.add_argument("--force", action="store_true", help="redo cached work")
    _add_config_options(pre)
    pre.set_defaults(func=cmd_preprocess)

    sample = sub.add_parser("sample", help="put the sample media shipped with the installed packages in DATAROOT")
    sample.add_argument("dataroot")
    sample.set_defaults(func=cmd_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    try:
        args.func(args)
    except AmgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run the same command again to continue.", file=sys.stderr)
        return 130
    return 0
