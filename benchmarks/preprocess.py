"""Preprocessing speed per sub-stage at 256 and 512 px on a shared clip.

    python benchmarks/preprocess.py [--video ../shared/data/video/obama_clip2.mp4] [--sizes 256 512]

The clip is linked (not copied) into a temporary DATAROOT. Frames/s of a sub-stage = video frames / seconds
spent in it; sub-stages overlap (matte and pose run in a worker thread beside the face mesh), so the wall
clock column is the one to compare with real time (25 frames/s).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from amg.config import PreprocessConfig
from amg.core.layout import Layout
from amg.tracking.preprocess import preprocess

from shared_data import SHARED


def run_once(video: Path, size: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        layout = Layout(root)
        name = video.stem
        layout.video_dir(name).mkdir(parents=True)
        (layout.video_dir(name) / f"{name}{video.suffix}").symlink_to(video.resolve())
        return preprocess(layout, name, PreprocessConfig(size=size), force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "video" / "obama_clip2.mp4")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.video.is_file():
        raise SystemExit(f"benchmark clip not found: {args.video}")

    stages = ["scan", "decode", "crop", "face", "pose", "matte", "encode", "fitting", "background", "preview"]
    print(f"clip: {args.video.name}")
    print(f"| size | frames | {' | '.join(stages)} | wall s | wall frames/s | x real time |")
    print(f"|---|---|{'---|' * len(stages)}---|---|---|")
    for size in args.sizes:
        report = run_once(args.video, size)
        n = report["frames"]
        cells = []
        for stage in stages:
            seconds = report["seconds"].get(stage, 0.0)
            cells.append(f"{n / seconds:.0f}" if seconds > 0 else "-")
        wall = report["wall_seconds"]
        print(f"| {size} | {n} | {' | '.join(cells)} | {wall:.1f} | {n / wall:.1f} | {n / wall / 25:.2f} |")
    print("(sub-stage cells: frames/s of that sub-stage alone)")


if __name__ == "__main__":
    main()
