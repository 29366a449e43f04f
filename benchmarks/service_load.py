"""Load on the HTTP service while it renders for real: status requests at a fixed rate on loopback.

    python benchmarks/service_load.py [--root /tmp/amg-quality] [--avatar obama_clip2] [--rate 50] [--seconds 20]

Starts `amg serve`'s app (real pipeline, one worker) on a free loopback port, uploads 60 s of shared speech for
the trained avatar (e.g. one made by benchmarks/quality.py), then sends `rate` GET /api/jobs/ID requests per
second for `seconds` while the job renders, and prints the latency percentiles, the errors (should be none) and
how far the render got meanwhile. Bounded: it stops by itself, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from amg.core.layout import Layout
from amg.media import load_audio, write_wav
from amg.service.app import ServiceSettings, create_app, running_server

from shared_data import SHARED

SPEECH = SHARED / "audio" / "musetalk_eng_60s.wav"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/amg-quality")
    parser.add_argument("--avatar", default="obama_clip2")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    layout = Layout(args.root)
    if not layout.gan_checkpoint(args.avatar).is_file():
        sys.exit(f"no trained avatar {args.avatar!r} in {args.root}: run benchmarks/quality.py first")
    speech = Path("/tmp/amg-load-speech.wav")
    write_wav(speech, load_audio(SPEECH)[: 16000 * 60], 16000)

    with running_server(create_app(layout.root, ServiceSettings())) as url:
        job = httpx.post(f"{url}/api/jobs?avatar={args.avatar}", content=speech.read_bytes(), timeout=60).json()
        status_url = f"{url}/api/jobs/{job['id']}"
        while httpx.get(status_url).json()["status"] == "queued":
            time.sleep(0.1)
        latencies, errors = [], []

        def one(client: httpx.Client) -> None:
            start = time.perf_counter()
            try:
                response = client.get(status_url)
                if response.status_code != 200:
                    errors.append(response.status_code)
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            latencies.append(time.perf_counter() - start)

        n = int(args.rate * args.seconds)
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(16) as pool:
            start = time.monotonic()
            for i in range(n):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                pool.submit(one, client)
        at_end = httpx.get(status_url).json()
        final = at_end
        while final["status"] in ("queued", "running"):
            time.sleep(0.5)
            final = httpx.get(status_url).json()
        ms = np.array(latencies) * 1000
        print(f"{n} status requests at {args.rate:g}/s for {args.seconds:g} s while rendering 60 s of speech:")
        print(
            f"  latency ms: p50 {np.percentile(ms, 50):.1f}  p95 {np.percentile(ms, 95):.1f}  "
            f"p99 {np.percentile(ms, 99):.1f}  max {ms.max():.1f};  errors: {len(errors)} {errors[:5]}"
        )
        print(
            f"  the job was {at_end['status']} at {at_end['progress']:.0%} when the load ended; it ended {final['status']}"
        )


if __name__ == "__main__":
    main()
