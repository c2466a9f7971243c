"""Vocoder benchmark: real-time factor, block-to-first-PCM latency, and memory as the song grows.

Bench configuration (random weights, seeded): the published decoder layout (upsample rates
10·10·8·3·2·2 = 9600, kernels 20·20·16·7·4·4, AMPBlock1 with kernels 3/7/11 and dilations 1/3/5,
SnakeBeta, 64 latent channels, 48 kHz) with upsample_initial_channel 256 instead of the published
1536, so that a CPU run takes minutes. CPU only, one torch thread by default (the two cores of
these machines are shared; spin-waiting OpenMP threads make a busy machine much slower).

Every case runs in its own fresh process so its peak memory is its own:

- `one-shot` (the in-run baseline): the reference chunked decode of the whole latent sequence,
  which returns the whole song's audio at once;
- `streaming`: the production `StreamingDecoder`, fed 10-frame blocks (2 s, what the diffusion
  stage emits) as fast as it takes them; each PCM piece is dropped once produced, as the servicer
  does after sending it.

Figures: wall time and real-time factor (wall / audio seconds; below 1 is faster than real time),
latency from a block's arrival to its first PCM piece, peak traced Python/numpy heap (tracemalloc)
and peak resident set growth over the process after warm-up (ru_maxrss, torch's buffers included).

    .venv/bin/python bench/vocoder.py [--seconds 30 60 120] [--channels 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.vocoder.bigvgan import BigVGANGenerator, DecoderConfig  # noqa: E402
from services.vocoder.demo import DEMO_CONFIG  # noqa: E402
from services.vocoder.engine import VocoderEngine  # noqa: E402
from services.vocoder.windows import WINDOW_FRAMES  # noqa: E402

BLOCK_FRAMES = 10
FPS = 5
MODES = ("one-shot", "streaming")


def _engine(channels: int) -> VocoderEngine:
    torch.manual_seed(0)
    config = DecoderConfig.from_dict({**DEMO_CONFIG, "upsample_initial_channel": channels})
    generator = BigVGANGenerator(config)
    return VocoderEngine(generator.eval().requires_grad_(False), torch.device("cpu"), max_frames=10**6)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(mode: str, seconds: int, channels: int, threads: int) -> dict:
    """One measurement in this (fresh) process: decode a `seconds` song in `mode`."""
    torch.set_num_threads(threads)
    engine = _engine(channels)
    latents = np.random.default_rng(seconds).standard_normal((seconds * FPS, 64)).astype(np.float32)
    started = time.perf_counter()
    engine.decode_window(latents[:WINDOW_FRAMES])
    window_s = time.perf_counter() - started
    rss_before = _current_rss_mib()
    tracemalloc.start()
    latencies: list[float] = []
    started = time.perf_counter()
    if mode == "one-shot":
        audio = engine.decode(latents)
        produced = len(audio)
        del audio
    else:
        decoder, produced = engine.stream(), 0
        for begin in range(0, len(latents), BLOCK_FRAMES):
            arrived = time.perf_counter()
            for index, piece in enumerate(decoder.iter_push(latents[begin : begin + BLOCK_FRAMES])):
                if index == 0:
                    latencies.append(time.perf_counter() - arrived)
                produced += len(piece.samples)
        produced += sum(len(piece.samples) for piece in decoder.finish())
    wall = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert produced == len(latents) * engine.samples_per_frame
    return {
        "wall": wall,
        "window": window_s,
        "latencies": latencies,
        "traced_mib": traced_peak / 2**20,
        "rss_growth_mib": max(0.0, _rss_mib() - rss_before),
    }


def _in_fresh_process(mode: str, seconds: int, channels: int, threads: int) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_case, (mode, seconds, channels, threads))


def main() -> None:
    """Run every (mode, length) case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[30, 60, 120], help="song lengths")
    parser.add_argument("--channels", type=int, default=256, help="upsample_initial_channel")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    results = {
        (mode, seconds): _in_fresh_process(mode, seconds, args.channels, args.threads)
        for seconds in args.seconds
        for mode in MODES
    }
    print(
        f"\nVocoder on CPU ({os.cpu_count()} cores, {args.threads} torch thread(s)), "
        f"upsample_initial_channel {args.channels}, published rates/kernels; no GPU measured.\n"
    )
    print("| song | mode | wall s | RTF | wall vs one-shot | peak traced heap MiB | peak RSS growth MiB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for (mode, seconds), result in results.items():
        baseline = results[("one-shot", seconds)]
        print(
            f"| {seconds} s | {mode} | {result['wall']:.1f} | {result['wall'] / seconds:.3f} | "
            f"{result['wall'] / baseline['wall']:.2f}x | {result['traced_mib']:.1f} | "
            f"{result['rss_growth_mib']:.1f} |"
        )
    print("\nLatency from a 10-frame block's arrival to its first PCM piece (streaming):\n")
    print("| song | one window decode s | first audio s | median s | max s | first audio / window |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for seconds in args.seconds:
        result = results[("streaming", seconds)]
        latencies = result["latencies"]
        print(
            f"| {seconds} s | {result['window']:.2f} | {latencies[0]:.2f} | "
            f"{statistics.median(latencies):.2f} | {max(latencies):.2f} | "
            f"{latencies[0] / result['window']:.2f}x |"
        )


if __name__ == "__main__":
    main()
