"""`amg eval`'s report: report.json for programs, report.html (tables, plots, side-by-side videos) for people."""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from amg.config import FPS
from amg.core.fsutil import atomic_path, write_text
from amg.core.layout import Layout
from amg.evaluation.mouth import ratio
from amg.evaluation.native import METHODS as NATIVE_METHODS

if TYPE_CHECKING:
    from amg.evaluation.records import EvalOptions, SequenceResult

# (key, label, what is better): "higher", "lower", "zero" (closer to 0), "one" (closer to 1) or "real" (closer
# to the real frames).
METRICS = (
    ("psnr", "PSNR, whole crop (dB)", "higher"),
    ("ssim", "SSIM, whole crop", "higher"),
    ("face_psnr", "PSNR, face box (dB)", "higher"),
    ("face_ssim", "SSIM, face box", "higher"),
    ("face_lpips", "LPIPS, face box (shift-tolerant)", "lower"),
    ("opening_mean_ratio", "mouth opening mean / real's", "one"),
    ("opening_spread_ratio", "mouth opening spread (std) / real's", "one"),
    ("mouth_sharpness_ratio", "mouth sharpness / real's", "one"),
    ("teeth_ratio", "frames showing teeth / real's", "one"),
    ("sync_offset_to_real", "AV offset minus the real frames' (frames; + = later)", "zero"),
    ("mouth_lmd_px", "mouth landmark distance to real (px at 256)", "lower"),
    ("jitter_px", "landmark jitter (px/frame² at 256)", "real"),
    ("mouth_lag_to_real", "mouth timing vs real mouth (frames; + = late)", "zero"),
    ("mouth_corr_to_real", "mouth motion correlation with real", "higher"),
    ("sync_offset", "AV sync offset (frames; + = mouth late)", "zero"),
    ("sync_confidence", "AV sync confidence", "higher"),
    ("mouth_sharpness", "mouth sharpness (Laplacian variance)", "real"),
    ("mouth_blur", "mouth blur effect (0 sharp, 1 blurred; no reference)", "real"),
    ("teeth_frames", "frames showing teeth", "real"),
    ("face_flicker", "face texture flicker (mean |change| per frame, 0-255)", "real"),
    ("eye_corr_to_driving", "eye opening correlation with the driving eyes", "higher"),
    ("blinks_per_minute", "blinks per minute", "real"),
    ("mouth_opening_mean_px", "mouth opening, mean (px at 256)", "real"),
    ("mouth_opening_std_px", "mouth opening, std (px at 256)", "real"),
    ("face_found", "frames with a detected face", "higher"),
)


# What the real held-out frames say about this person whatever the speech: the reference for cross-driven speech
# (the mouth opening's mean and spread taken over the whole video's speaking frames instead, where measured).
PERSON_KEYS = (
    "jitter_px",
    "mouth_sharpness",
    "face_flicker",
    "blinks_per_minute",
    "mouth_opening_mean_px",
    "mouth_opening_std_px",
    "mouth_blur",
    "teeth_frames",
    "sync_offset",  # the person's own speech: the offset another voice should also give
)

# Ratios to the "real" column (the ground truth, or for other speech the person's own frames): a mouth
# that opens less, shows fewer teeth or is softer than the person's own scores under 1, however well it sync.
RATIOS = {
    "opening_mean_ratio": "mouth_opening_mean_px",
    "opening_spread_ratio": "mouth_opening_std_px",
    "mouth_sharpness_ratio": "mouth_sharpness",
    "teeth_ratio": "teeth_frames",
}


def with_person_reference(
    cross: dict[str, dict[str, float]], held_out_real: dict[str, float], own: dict[str, float] | None = None
) -> dict:
    """Cross-driven summaries plus a "real" column holding the held-out real frames' person statistics, its
    mouth opening replaced by `own` (the whole video's speaking frames, amg.evaluation.evaluate) where given."""
    return cross | {"real": {k: held_out_real[k] for k in PERSON_KEYS if k in held_out_real} | (own or {})}


def relative_to_real(summaries: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Every source's summary plus its RATIOS and its sync offset relative to the "real" column's."""
    real = summaries.get("real")
    if real is None:
        return summaries
    out = {}
    for source, values in summaries.items():
        values = dict(values)
        if source != "real":
            for key, base in RATIOS.items():
                if base in values and base in real:
                    values[key] = ratio(values[base], real[base])
            if "sync_offset" in values and "sync_offset" in real:
                values["sync_offset_to_real"] = values["sync_offset"] - real["sync_offset"]
        out[source] = values
    return out


def better(key_rule: str, ours: float, theirs: float, real: float | None) -> bool | None:
    """Whether `ours` beats `theirs` under the metric's rule (None when it cannot be told)."""
    if math.isnan(ours) or math.isnan(theirs) or ours == theirs:
        return None
    if key_rule == "higher":
        return ours > theirs
    if key_rule == "lower":
        return ours < theirs
    if key_rule == "zero":
        return abs(ours) < abs(theirs)
    if key_rule == "one":
        return abs(ours - 1) < abs(theirs - 1)
    if real is None or math.isnan(real):
        return None
    return abs(ours - real) < abs(theirs - real)


# The no-learning baselines (amg.gan.baselines), weakest first.
BASELINES = ("copy", "warp")


def comparison(summaries: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Generated against each baseline, metric by metric: the values, the difference to the strongest
    baseline (the warp) and who wins: `better_than_copy`, `better_than_warp`, and `generated_better` (True if
    it beats every baseline, False if it loses to any, None when it cannot be told). "Closer to real" metrics
    aim at the summaries' "real" column, when there is one."""
    generated, real = summaries["generated"], summaries.get("real", {})
    baselines = [b for b in BASELINES if b in summaries]
    rows = {}
    for key, _, rule in METRICS:
        present = [b for b in baselines if key in summaries[b]]
        if key not in generated or not present:
            continue
        ours = generated[key]
        row = {"generated": ours, "real": real.get(key)}
        for b in present:
            row[b] = summaries[b][key]
            row[f"better_than_{b}"] = better(rule, ours, summaries[b][key], real.get(key))
        verdicts = [row[f"better_than_{b}"] for b in present]
        row["difference"] = ours - row[present[-1]]
        row["generated_better"] = False if False in verdicts else (True if all(verdicts) else None)
        rows[key] = row
    return rows


def _jsonable(value):
    """Infinities (PSNR of identical frames) and NaNs as strings: JSON has no number for them."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- plots -----------------------------------------------------------------------------------------------------
def _save_figure(figure, path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_report(layout: Layout, name: str, results: list[SequenceResult], pose_tracks: tuple) -> list[str]:
    """Mouth and eye opening over time, head pose over time and sync correlation over lags; returns the file
    names."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder = layout.eval_dir(name)
    held_out = results[0]
    time = np.arange(len(held_out.opening["real"])) / FPS

    figure, axis = plt.subplots(figsize=(11, 3.2))
    for source, style in (("real", "k-"), ("driving", "C2--"), ("generated", "C0-"), ("copy", "C1:"), ("warp", "C3:")):
        axis.plot(time, held_out.opening[source], style, lw=1.2, label=source)
    axis.set(xlabel="held-out time (s)", ylabel="mouth opening (px at 256)", title="Mouth opening, held-out tail")
    axis.legend(loc="upper right")
    _save_figure(figure, folder / "mouth_opening.png")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(11, 3.2))
    for source, style in (("real", "k-"), ("driving", "C2--"), ("generated", "C0-")):
        axis.plot(time, held_out.eyes[source], style, lw=1.2, label=source)
    axis.set(xlabel="held-out time (s)", ylabel="eye opening (lid gap / eye width)", title="Eye opening, held-out tail")
    axis.legend(loc="lower right")
    _save_figure(figure, folder / "eye_opening.png")
    plt.close(figure)

    real_euler, generated_euler = pose_tracks
    figure, axes = plt.subplots(1, 3, figsize=(12, 3), sharex=True)
    for i, (axis, angle) in enumerate(zip(axes, ("yaw", "pitch", "roll"))):
        axis.plot(time, real_euler[:, i], "k-", lw=1.2, label="real")
        axis.plot(time, generated_euler[:, i], "C0-", lw=1.2, label="generated from speech")
        axis.set(xlabel="held-out time (s)", ylabel=f"{angle} (deg)")
    axes[0].legend(loc="best", fontsize=8)
    figure.suptitle("Head pose: real vs sampled from the held-out speech")
    _save_figure(figure, folder / "pose.png")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for result in results:
        for source, sync in result.sync.items():
            style = {"real": "k-", "generated": "-", "enhanced": "--", "copy": ":", "warp": "-."}[source]
            label = source if result.label == "held_out" else f"{source}, {result.label}"
            axis.plot(sync.lags, sync.correlation, style, lw=1.2, label=label)
    axis.axvline(0, color="grey", lw=0.5)
    axis.set(xlabel="lag (frames; + = mouth later than speech)", ylabel="correlation", title="AV sync")
    axis.legend(fontsize=7)
    _save_figure(figure, folder / "sync.png")
    plt.close(figure)
    return ["mouth_opening.png", "eye_opening.png", "pose.png", "sync.png"]


# --- html ------------------------------------------------------------------------------------------------------
def fmt_number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _table(summaries: dict[str, dict[str, float]]) -> str:
    sources = [s for s in ("real", "driving", "generated", "enhanced", *BASELINES) if s in summaries]
    rows = comparison(summaries)
    baselines = [b for b in BASELINES if b in summaries]
    head = "".join(f"<th>{s}</th>" for s in sources) + "".join(f"<th>generated vs {b}</th>" for b in baselines)
    body = []
    for key, label, rule in METRICS:
        if not any(key in summaries[s] for s in sources):
            continue
        cells = "".join(f"<td>{fmt_number(summaries[s].get(key))}</td>" for s in sources)
        row = rows.get(key, {})
        for b in baselines:
            mark = {True: "better", False: "worse", None: ""}[row.get(f"better_than_{b}")]
            difference = fmt_number(row["generated"] - row[b]) if b in row else ""
            cells += f'<td class="{mark}">{difference} {mark}</td>'
        body.append(f"<tr><td>{html.escape(label)} <small>({rule} is better)</small></td>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _panels(result: SequenceResult) -> list[str]:
    """The side-by-side video's panels, left to right."""
    return [source for source in result.opening if source != "driving"] + ["conditioning"]


def _html(report: dict, results: list[SequenceResult], plots: list[str]) -> str:
    name = html.escape(report["video"])
    held = report["frames"]
    parts = [
        f"<h1>AMG evaluation of avatar <code>{name}</code></h1>",
        f"<p>Trained on frames 0–{held['held_out_start'] - 1}; evaluated on the {held['held_out']} held-out frames "
        f"({held['held_out'] / FPS:.1f} s, never seen in training), driven by their own speech with the real head "
        f"pose. <i>driving</i>: the landmarks the lip-sync network predicts, which the generator "
        f"and the baselines are driven by (no image: it tells a lip-sync fault from an image fault). Baselines (no "
        f"learning): <i>copy</i>, for each frame the training frame with the nearest driving landmarks; "
        f"<i>warp</i>, that frame mesh-warped onto the driving landmarks. "
        f"Generator size {report['size']} px.</p>",
        "<h2>Held-out reconstruction</h2>",
        _table(results[0].summaries),
        '<video controls preload="metadata" src="held_out.mp4"></video>',
        f"<p>{' | '.join(_panels(results[0]))}, with the held-out speech.</p>",
    ]
    for plot in plots:
        parts.append(f'<img src="{plot}" alt="{plot}">')
    pose = report["self_driven"]["head_motion"]
    pose_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{fmt_number(v)}</td></tr>" for k, v in pose.items())
    parts += ["<h2>Head motion from the held-out speech</h2>", f"<table>{pose_rows}</table>"]
    for result in results[1:]:
        label = html.escape(result.label)
        parts += [
            f"<h2>Driven by <code>{label}</code> (no ground truth)</h2>",
            _table(result.summaries),
            f'<video controls preload="metadata" src="cross_{label}.mp4"></video>',
            f"<p>{' | '.join(_panels(result))}. The real column holds the held-out real frames' statistics, the mouth "
            "opening's over every speaking frame of the video.</p>",
        ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
        ".better{color:#060}.worse{color:#a00}video,img{max-width:100%;display:block;margin:1em 0}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>AMG eval {name}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"


def write_report(
    layout: Layout,
    name: str,
    options: EvalOptions,
    n_frames: int,
    start: int,
    size: int,
    results: list[SequenceResult],
    pose: tuple[dict, np.ndarray, np.ndarray],
    native: dict | None = None,
    own: dict[str, float] | None = None,
) -> dict:
    """Write report.json, the plots and report.html into output_data/eval_NAME/; return the report. `own`: the
    person's mouth opening over their whole video's speaking frames, the reference of other speech's."""
    pose_stats, real_euler, generated_euler = pose
    real = results[0].summaries["real"]
    results = [replace(results[0], summaries=relative_to_real(results[0].summaries))] + [
        replace(r, summaries=relative_to_real(with_person_reference(r.summaries, real, own))) for r in results[1:]
    ]
    held_out = results[0]
    report = {
        "video": name,
        "holdout": options.holdout,
        "frames": {"total": n_frames, "held_out_start": start, "held_out": n_frames - start},
        "size": size,
        "self_driven": {
            "sources": held_out.summaries,
            "comparison": comparison(held_out.summaries),
            "head_motion": pose_stats,
            "native": native,
        },
        "cross_driven": {r.label: {"sources": r.summaries, "comparison": comparison(r.summaries)} for r in results[1:]},
    }
    plots = plot_report(layout, name, results, (real_euler, generated_euler))
    write_text(layout.eval_report(name), json.dumps(_jsonable(report), indent=2))
    write_text(layout.eval_html(name), _html(_jsonable(report), results, plots))
    return report


def summary_table(report: dict) -> str:
    """The held-out comparison as plain text (for the terminal and benchmarks/quality.py)."""
    rows = report["self_driven"]["comparison"]
    sources = report["self_driven"]["sources"]
    columns = [s for s in ("real", "generated", "enhanced", *BASELINES) if s in sources]
    labels = {key: label for key, label, _ in METRICS}
    lines = [f"{'metric':<48}" + "".join(f"{c:>10}" for c in columns) + "  generated vs copy, warp"]
    for key, row in rows.items():
        verdicts = ", ".join(
            {True: "better", False: "worse", None: "-"}[row.get(f"better_than_{b}")] for b in BASELINES
        )
        cells = "".join(f"{fmt_number(sources[c].get(key)):>10}" for c in columns)
        lines.append(f"{labels[key]:<48}{cells}  {verdicts}")
    native = report["self_driven"].get("native")
    return "\n".join(lines + (native_table(native) if native else []))


NATIVE_ROWS = (
    ("psnr", "whole frame PSNR (dB)"),
    ("ssim", "whole frame SSIM"),
    ("face_psnr", "face box PSNR (dB)"),
    ("face_ssim", "face box SSIM"),
    ("face_lpips", "face box LPIPS (lower is better)"),
    ("face_sharpness_vs_real", "face box sharpness / real"),
    ("mouth_sharpness_vs_real", "mouth box sharpness / real"),
    ("seam_energy_vs_real", "seam band gradient energy / real"),
)


def native_table(native: dict) -> list[str]:
    """The held-out tail in the source's own frame (amg.evaluation.native), as lines of text."""
    width, height = native["size"]
    columns = [m for m in NATIVE_METHODS if m in native]
    lines = [
        "",
        f"In the source's own {width}x{height} frame:",
        f"{'metric':<48}" + "".join(f"{c:>15}" for c in columns),
    ]
    for key, label in NATIVE_ROWS:
        if any(key in native[c] for c in columns):
            lines.append(f"{label:<48}" + "".join(f"{fmt_number(native[c].get(key)):>15}" for c in columns))
    return lines
