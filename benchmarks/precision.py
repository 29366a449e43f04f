"""fp32 against the reduced precision (bf16 on a CPU with a bf16 matrix engine) in one run, on this machine.

    python benchmarks/precision.py [--quick] [--json out.json] [--avatar-512 DATAROOT:NAME]

Prints: the host (CPU model, its bf16 flags, cores) and what `--precision auto` picks here, with why; the
machine's ceilings (fp32 and bf16 matmul GFLOP/s); for each generator (default and quality preset widths, 256
and 512 px) and each discriminator, forward frames/s in fp32, in bf16 (autocast, channels-last) and, for the
generators, in ONNX Runtime (fp32); a training step of the networks alone (generator + both discriminators,
forward and backward, AdamW) at 256 and 512 px; a real image-GAN training step (`GanTrainer.step`, warps and
all) at 256 px and, given a 512-px avatar (`--avatar-512`), at 512 px; and `render()` end to end on 1 min of
speech at 256 px. Each pair is measured alternately (fp32, reduced, fp32, ...) and reported as the median of the
rounds, so a busy shared host slows both alike. `--training-step-only` measures the real training steps alone.

The real training step at 256 px (unless `--avatar-256` names another) and the render use the benchmark avatar of
benchmarks/render.py (`render_bench` in /tmp/amg-bench, from ../shared/data/video/obama_clip2.mp4), made on first
use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from amg.conditioning import N_CHANNELS
from amg.config import AvatarConfig, GanConfig, MotionOptions, RenderConfig
from amg.core.layout import Layout
from amg.core.onnx_runtime import OnnxModel
from amg.core.precision import PrecisionPlan, alternated_timings, cpu_bf16_engine, cpu_model, resolve_precision
from amg.gan.inputs import CANDIDATE_CHANNELS
from amg.gan.networks import Generator, MultiScaleDiscriminator, TemporalDiscriminator, count_flops

GENERATORS = {  # (ngf, max_channels, n_levels, size): the preset widths at 256 and at 512 px
    "default, 256 px": (16, 128, 6, 256),
    "quality width, 256 px": (48, 384, 6, 256),
    "default, 512 px": (16, 128, 7, 512),
    "quality width, 512 px": (48, 384, 7, 512),
}
K = 4  # candidates
DYNAMIC = K * CANDIDATE_CHANNELS + 3 * N_CHANNELS
DETAIL = GanConfig().detail_sharpness  # the generator as it renders (its finest band from one candidate)


def matmul_ceilings(rounds: int) -> dict[str, float]:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a16, b16 = a.bfloat16(), b.bfloat16()
    seconds = alternated_timings({"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16}, rounds)
    return {name: 2 * 2048**3 / s / 1e9 for name, s in seconds.items()}


def plans() -> dict[str, PrecisionPlan]:
    return {"fp32": resolve_precision("fp32", "cpu"), "bf16": resolve_precision("bf16", "cpu")}


def generator_forward(spec: tuple, batch: int, rounds: int) -> dict[str, float]:
    """Frames/s of a generator's forward pass in fp32, bf16 and ONNX Runtime, and its GFLOP per frame."""
    ngf, max_channels, levels, size = spec
    torch.manual_seed(0)
    nets = {name: Generator(K, DYNAMIC, 3, ngf, max_channels, levels, DETAIL).eval() for name in ("fp32", "bf16")}
    nets["bf16"].load_state_dict(nets["fp32"].state_dict())
    dynamic = torch.rand(batch, DYNAMIC, size, size) * 2 - 1
    background = torch.rand(1, 3, size, size) * 2 - 1
    calls = {}
    for name, plan in plans().items():
        net = plan.prepare(nets[name])
        with torch.no_grad():
            static = net.encode_static(background)
        x = plan.images(dynamic)

        def call(net=net, plan=plan, x=x, static=static):
            with torch.no_grad(), plan.autocast():
                net(x, static, background)

        calls[name] = call
    with torch.no_grad():
        static = nets["fp32"].encode_static(background)
    onnx = OnnxModel.exported(nets["fp32"], dynamic[:1], {"static": static, "background": background})
    calls["onnxruntime"] = lambda: onnx(dynamic)
    seconds = alternated_timings(calls, rounds)
    out = {name: batch / s for name, s in seconds.items()}
    out["gflop_per_frame"] = count_flops(nets["fp32"], dynamic[:1], static, background) / 1e9
    return out


def discriminator_forward(size: int, batch: int, rounds: int) -> dict[str, dict[str, float]]:
    results = {}
    for label, make, shape in (
        ("multi-scale PatchGAN", lambda: MultiScaleDiscriminator(N_CHANNELS + 3, 16, 2), (batch, N_CHANNELS + 3)),
        ("temporal (3-frame clips)", lambda: TemporalDiscriminator(N_CHANNELS + 3, 16), (batch, N_CHANNELS + 3)),
    ):
        torch.manual_seed(0)
        x = torch.rand(*shape, size, size)
        calls = {}
        for name, plan in plans().items():
            net, inp = plan.prepare(make()), plan.images(x)
            temporal = "temporal" in label
            args = (inp, 3) if temporal else (inp,)

            def call(net=net, args=args, context=plan.volumetric if temporal else plan.autocast):
                with torch.no_grad(), context():
                    net(*args)

            calls[name] = call
        results[label] = {name: batch / s for name, s in alternated_timings(calls, rounds).items()}
    return results


def network_step(size: int, rounds: int) -> dict[str, float]:
    """Steps/s of the default preset's networks alone: generator, both discriminators, forward and backward,
    one AdamW step each, on a batch of 2 clips x 3 frames (no data loading, no warps)."""
    levels = 6 if size == 256 else 7
    calls = {}
    for name, plan in plans().items():
        torch.manual_seed(0)
        g = plan.prepare(Generator(K, DYNAMIC, 3, 16, 128, levels, DETAIL))
        d = plan.prepare(MultiScaleDiscriminator(N_CHANNELS + 3, 16, 2))
        t = plan.prepare(TemporalDiscriminator(N_CHANNELS + 3, 16))
        opt = torch.optim.AdamW([*g.parameters(), *d.parameters(), *t.parameters()])
        dynamic = plan.images(torch.rand(6, DYNAMIC, size, size) * 2 - 1)
        cond = plan.images(torch.rand(6, N_CHANNELS, size, size))
        background = torch.rand(1, 3, size, size)

        def step(g=g, d=d, t=t, opt=opt, dynamic=dynamic, cond=cond, background=background, plan=plan):
            with plan.autocast():
                fake, _ = g(dynamic, g.encode_static(background), background)
                x = torch.cat([cond, fake], dim=1).to(plan.dtype)
                loss = sum(o[-1].float().pow(2).mean() for o in d(x))
            with plan.volumetric():
                loss = loss + t(x.float(), 3)[-1].float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        calls[name] = step
    return {name: 1 / s for name, s in alternated_timings(calls, rounds).items()}


def avatar_arg(text: str) -> tuple[Path, str]:
    """DATAROOT:NAME of an existing avatar (preprocessed, its image GAN trained: its candidate bank is read)."""
    root, sep, name = text.rpartition(":")
    if not sep or not root or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not DATAROOT:NAME")
    return Path(root), name


def benchmark_avatar() -> tuple[Path, str]:
    """The benchmark avatar of benchmarks/render.py (256 px), made on first use."""
    from render import AVATAR, ROOT, ensure_avatar

    ensure_avatar(Layout(ROOT), "obama_clip2", {"gan.steps": 20, "gan.eval_every": 20, "gan.save_every": 20})
    return ROOT, AVATAR


def real_training_step(avatar: tuple[Path, str], rounds: int, steps_per_round: int = 3) -> dict[str, float]:
    """Steps/s of GanTrainer.step at the default preset on `avatar` (DATAROOT, NAME) at its crop's size, batch
    building (retrieval, warps) included. Each round runs a few consecutive steps per precision, as a training
    does."""
    from amg.gan.data import load_gan_data, make_references
    from amg.gan.inputs import GeneratorInputs
    from amg.gan.train import GanTrainer, sized_config

    layout, name = Layout(avatar[0]), avatar[1]
    cfg = sized_config(layout, name, GanConfig())
    data = load_gan_data(layout, name, cfg.size, AvatarConfig().holdout)
    refs = make_references(data, layout, name, cfg.bank_size)
    trainers, steps = {}, {}
    for label, plan in plans().items():
        inputs = GeneratorInputs(
            refs, cfg.context, cfg.n_candidates, cfg.candidate_hysteresis, channels_last=plan.reduced, dtype=plan.dtype
        )
        trainers[label], steps[label] = GanTrainer(cfg, data, inputs, layout, name, plan), 0

    def stepper(label):
        def run():
            for _ in range(steps_per_round):
                trainers[label].step(steps[label])
                steps[label] += 1

        return run

    seconds = alternated_timings({label: stepper(label) for label in trainers}, rounds)
    result = {label: steps_per_round / s for label, s in seconds.items()}
    return result | {"size": cfg.size, "bf16_over_fp32": result["bf16"] / result["fp32"]}


def render_end_to_end(minutes: float) -> dict[str, float]:
    """Frames/s of render() on `minutes` of speech: fp32 (ONNX Runtime) and bf16 (PyTorch), alternated twice."""
    from render import AVATAR, ROOT, speech_of

    from amg.pipeline import render

    benchmark_avatar()
    layout = Layout(ROOT)
    audio = speech_of(layout, minutes)
    frames = int(minutes * 60 * 25)
    configs = {"fp32": RenderConfig(precision="fp32"), "bf16": RenderConfig(precision="bf16", engine="torch")}
    calls = {
        name: (lambda cfg=cfg: render(layout, audio, AVATAR, MotionOptions(), cfg)) for name, cfg in configs.items()
    }
    return {name: frames / s for name, s in alternated_timings(calls, 2).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 256 px only, no render")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--avatar-256",
        type=avatar_arg,
        metavar="DATAROOT:NAME",
        help="the 256-px avatar of the real training step (default: benchmarks/render.py's, made on first use)",
    )
    parser.add_argument(
        "--avatar-512",
        type=avatar_arg,
        metavar="DATAROOT:NAME",
        help="a 512-px avatar (preprocessed, GAN trained) "
        "for the real training step at 512 px; without it that row is skipped",
    )
    parser.add_argument("--training-step-only", action="store_true", help="only the real training steps")
    args = parser.parse_args()
    rounds = 3 if args.quick else 5
    auto = resolve_precision("auto", "cpu")
    result: dict = {
        "host": {
            "cpu": cpu_model(),
            "bf16_engine": cpu_bf16_engine(),
            "cores": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "auto": {"precision": auto.name, "reason": auto.reason},
        "matmul_gflops": matmul_ceilings(rounds),
    }
    print(json.dumps(result, indent=2), flush=True)
    if not args.training_step_only:
        networks(result, args.quick, rounds)
    result["gan_training_steps_per_s"] = training_steps(args.avatar_256, args.avatar_512, rounds)
    if not args.quick and not args.training_step_only:
        result["render_fps_256"] = render_end_to_end(1.0)
        print(json.dumps(result["render_fps_256"], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def networks(result: dict, quick: bool, rounds: int) -> None:
    """The ceilings' rows: each network's forward pass, and the networks' training step alone."""
    specs = {k: v for k, v in GENERATORS.items() if not quick or "256" in k}
    result["generator_forward_fps"] = {label: generator_forward(spec, 8, rounds) for label, spec in specs.items()}
    print(json.dumps(result["generator_forward_fps"], indent=2), flush=True)
    result["discriminator_forward_fps"] = {f"{s} px": discriminator_forward(s, 6, rounds) for s in (256, 512)}
    result["network_training_steps_per_s"] = {f"{s} px": network_step(s, rounds) for s in (256, 512)}
    print(json.dumps({k: result[k] for k in ("discriminator_forward_fps", "network_training_steps_per_s")}, indent=2))


def training_steps(avatar_256: tuple | None, avatar_512: tuple | None, rounds: int) -> dict[str, dict]:
    """The real training step at 256 px and, given a 512-px avatar, at 512 px (fp32 and bf16 alternated)."""
    results = {}
    for label, avatar in (("256 px", avatar_256 or benchmark_avatar()), ("512 px", avatar_512)):
        if avatar is None:
            print("512 px training step skipped: give a 512-px avatar with --avatar-512 DATAROOT:NAME", flush=True)
            continue
        results[label] = real_training_step(avatar, rounds)
        print(json.dumps({label: results[label]}, indent=2), flush=True)
    return results


if __name__ == "__main__":
    main()
