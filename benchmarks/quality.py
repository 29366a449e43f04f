"""The quality scoreboard: `amg eval` on shared clips, one table.

    python benchmarks/quality.py [--root /tmp/amg-quality] [--preset fast] [--clips obama_clip2 andrew_ng_clip1]
                                 [--audio librispeech_1320_male.mp3] [--max-minutes M] [--set gan.steps=600 ...]

Each clip (from ../shared/data/video, linked, not copied) becomes an avatar trained on its first 85% with the
preset (reused by later runs: delete ROOT/checkpoints/CLIP after changing the preset or --set), its held-out
15% tail is rendered from its own speech and compared with the real frames, next to two baselines: the
nearest-landmark training frame copied, and mesh-warped onto the driving landmarks; `--audio` files (from
../shared/data/audio) also drive each avatar (cross-driven: sync and mouth statistics only). Prints the held-out metrics per clip (real | generated | copy | warp), the cross-driven sync,
the wall time, and for a clip larger than its crop (HD, half-body) the tail in the source's own frame and pixels
(generated | over a still | nearest frame); the full reports are in ROOT/output_data/eval_CLIP/report.html.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amg.config import PRESETS, AvatarConfig, load_config, preset_overrides
from amg.core.layout import Layout
from amg.evaluation.records import EvalOptions
from amg.evaluation.report import METRICS, fmt_number, native_table
from amg.pipeline import evaluate_avatar

from shared_data import link_shared

CELL = 37


def cell(row: dict | None) -> str:
    """real, generated (* when it beats both baselines), copy, warp: CELL characters."""
    if row is None:
        return " " * CELL
    mark = "*" if row["generated_better"] else " "
    values = f"{fmt_number(row['real']):>8} {fmt_number(row['generated']):>9}{mark}"
    return values + f"{fmt_number(row.get('copy')):>9}{fmt_number(row.get('warp')):>9}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/amg-quality")
    parser.add_argument("--preset", choices=list(PRESETS), default="fast")
    parser.add_argument("--clips", nargs="+", default=["obama_clip2", "andrew_ng_clip1"])
    parser.add_argument("--audio", nargs="*", default=["librispeech_1320_male.mp3"])
    parser.add_argument("--max-minutes", type=float, help="cap each image-GAN training (resumable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    layout = Layout(args.root)
    audios = []
    for file in args.audio:
        name = Path(file).stem
        link_shared(f"audio/{file}", layout.audio_dir(name) / f"{name}{Path(file).suffix}")
        audios.append(name)
    overrides = dict(pair.split("=", 1) for pair in args.set)
    cfg = load_config(AvatarConfig, None, preset_overrides(args.preset), **overrides)

    reports, seconds = {}, {}
    for clip in args.clips:
        link_shared(f"video/{clip}.mp4", layout.video_dir(clip) / f"{clip}.mp4")
        start = time.perf_counter()
        reports[clip] = evaluate_avatar(layout, clip, cfg, EvalOptions(audios=tuple(audios)), args.max_minutes)
        seconds[clip] = time.perf_counter() - start

    header = f"{'held-out metric':<46}" + "".join(f"{clip[: CELL - 2]:>{CELL}}" for clip in args.clips)
    print(f"\npreset {args.preset}; per clip: real | generated | copy | warp (* = generated beats both baselines)")
    print(header)
    for key, label, _ in METRICS:
        rows = [reports[clip]["self_driven"]["comparison"].get(key) for clip in args.clips]
        if any(rows):
            print(f"{label[:46]:<46}" + "".join(cell(row) for row in rows))
    print("the lip-sync network's own landmarks (driving both; no image):")
    for key in (
        "mouth_lmd_px",
        "mouth_lag_to_real",
        "mouth_corr_to_real",
        "mouth_opening_mean_px",
        "mouth_opening_std_px",
    ):
        values = [reports[clip]["self_driven"]["sources"]["driving"][key] for clip in args.clips]
        print(f"{'  driving: ' + key:<46}" + "".join(f"{fmt_number(v):>18}{'':>{CELL - 18}}" for v in values))
    for audio in audios:
        for key in ("sync_offset", "sync_confidence", "mouth_opening_mean_px", "mouth_opening_std_px"):
            rows = [reports[clip]["cross_driven"][audio]["comparison"][key] for clip in args.clips]
            print(f"{(audio + ': ' + key)[:46]:<46}" + "".join(cell(row) for row in rows))
    print(f"{'wall time (train + eval), s':<46}" + "".join(f"{seconds[c]:>{CELL}.0f}" for c in args.clips))
    for clip in args.clips:  # HD and half-body sources: the tail as delivered, in the source's own pixels
        native = reports[clip]["self_driven"].get("native")
        if native:
            print(f"\n{clip}" + "\n".join(native_table(native)))
    for clip in args.clips:
        print(f"report: {layout.eval_html(clip)}")


if __name__ == "__main__":
    main()
