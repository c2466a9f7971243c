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

Both modes decode exactly the same windows, so their wall times differ only by bookkeeping and by
background load on the shared machine; each case runs `--repeats` times and the fastest is kept.

Figures: wall time and real-time factor (wall / audio seconds; below 1 is faster than real time);
latency from a block's arrival to its first PCM piece against the one-shot time per window; the
peak numpy/Python heap (tracemalloc: the song-sized buffers) and the peak resident set growth
during the decode (VmHWM reset through /proc/self/clear_refs after warm-up, torch's buffers
included).

    .venv/bin/python bench/vocoder.py [--seconds 30 60 120] [--channels 256] [--threads 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator, DecoderConfig  # noqa: E402
from services.vocoder.diffrhythm2.demo import DEMO_CONFIG  # noqa: E402
from services.vocoder.diffrhythm2.engine import VocoderEngine  # noqa: E402
from services.vocoder.diffrhythm2.windows import WINDOW_FRAMES, WINDOWS  # noqa: E402

BLOCK_FRAMES = 10
FPS = 5
MODES = ("one-shot", "streaming")


def _engine(channels: int) -> VocoderEngine:
    torch.manual_seed(0)
    config = DecoderConfig.from_dict({**DEMO_CONFIG, "upsample_initial_channel": channels})
    generator = BigVGANGenerator(config)
    return VocoderEngine(generator.eval().requires_grad_(False), torch.device("cpu"), max_frames=10**6)


def _status_mib(key: str) -> float:
    """A memory figure from /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak_rss() -> None:
    """Hand freed heap back to the OS, then start a new peak resident-set measurement (VmHWM)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def run_case(mode: str, seconds: int, channels: int, threads: int) -> dict:
    """One measurement in this (fresh) process: decode a `seconds` song in `mode`."""
    torch.set_num_threads(threads)
    engine = _engine(channels)
    latents = np.random.default_rng(seconds).standard_normal((seconds * FPS, 64)).astype(np.float32)
    engine.decode_window(latents[:WINDOW_FRAMES])
    _reset_peak_rss()
    rss_before = _status_mib("VmRSS")
    tracemalloc.start()
    latencies: list[float] = []
    started = time.perf_counter()
    if mode == "one-shot":
        audio = engine.decode(latents)
        produced = audio.shape[1]
        del audio
    else:
        decoder, produced = engine.stream(), 0
        for begin in range(0, len(latents), BLOCK_FRAMES):
            arrived = time.perf_counter()
            for index, piece in enumerate(decoder.iter_push(latents[begin : begin + BLOCK_FRAMES])):
                if index == 0:
                    latencies.append(time.perf_counter() - arrived)
                produced += piece.samples.shape[1]
        produced += sum(piece.samples.shape[1] for piece in decoder.finish())
    wall = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert produced == len(latents) * engine.samples_per_frame
    return {
        "wall": wall,
        "latencies": latencies,
        "traced_mib": traced_peak / 2**20,
        "rss_growth_mib": _status_mib("VmHWM") - rss_before,
        "windows": len(WINDOWS.pastes(len(latents))),
    }


def _in_fresh_process(mode: str, seconds: int, channels: int, threads: int) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_case, (mode, seconds, channels, threads))


def _fastest(mode: str, seconds: int, args: argparse.Namespace) -> dict:
    runs = [_in_fresh_process(mode, seconds, args.channels, args.threads) for _ in range(args.repeats)]
    return min(runs, key=lambda run: run["wall"])


def main() -> None:
    """Run every (mode, length) case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[30, 60, 120], help="song lengths")
    parser.add_argument("--channels", type=int, default=256, help="upsample_initial_channel")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case; the fastest is kept")
    args = parser.parse_args()
    results = {(mode, seconds): _fastest(mode, seconds, args) for seconds in args.seconds for mode in MODES}
    print(
        f"\nVocoder on CPU ({os.cpu_count()} cores, {args.threads} torch thread(s)), "
        f"upsample_initial_channel {args.channels}, published rates/kernels; no GPU measured.\n"
    )
    print(
        "| song | mode | windows | wall s | RTF | wall vs one-shot | peak numpy heap MiB "
        "| heap vs one-shot | peak RSS growth MiB | RSS vs one-shot |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (mode, seconds), result in results.items():
        base = results[("one-shot", seconds)]
        print(
            f"| {seconds} s | {mode} | {result['windows']} | {result['wall']:.1f} | "
            f"{result['wall'] / seconds:.3f} | {result['wall'] / base['wall']:.2f}x | "
            f"{result['traced_mib']:.2f} | {result['traced_mib'] / base['traced_mib']:.3f}x | "
            f"{result['rss_growth_mib']:.1f} | {result['rss_growth_mib'] / base['rss_growth_mib']:.2f}x |"
        )
    print("\nLatency from a 10-frame block's arrival to its first PCM piece (streaming):\n")
    print("| song | one-shot s per window | first audio s | median s | max s | first audio / window |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for seconds in args.seconds:
        latencies = results[("streaming", seconds)]["latencies"]
        per_window = results[("one-shot", seconds)]["wall"] / results[("one-shot", seconds)]["windows"]
        print(
            f"| {seconds} s | {per_window:.2f} | {latencies[0]:.2f} | {statistics.median(latencies):.2f} | "
            f"{max(latencies):.2f} | {latencies[0] / per_window:.2f}x |"
        )


if __name__ == "__main__":
    main()
