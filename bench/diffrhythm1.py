"""DiffRhythm v1 benchmark: seconds per song against a plain run of the same algorithm, and the
peak memory of the chunked VAE decode against the whole decode.

Sampling, CPU bench configuration (random weights, seeded): dim 512, depth 4 (32 heads of 16),
ff_mult 4, 4 text ConvNeXt blocks, the full (6144-frame) model, a 96 s song (2067 frames),
8 grid points (7 Euler updates), cfg 4.0. Two samplers make the same song in the same run, in
turn, `--repeats` times each (the fastest run of each is kept, since the machine is shared):

- `ours`: the production `CfmSampler` (text features computed once per song, both guidance
  branches as one batched forward);
- `plain` (the in-run baseline): the reference's way, `DiT.forward` twice per Euler update, the
  conditional and the unconditional branch as separate passes, everything recomputed every time.

Both give the same latents; the table shows how far apart they are.

Decoding: the Oobleck VAE at width `--vae-channels` (128 published; 32 by default so that a CPU run
takes minutes) decodes songs of `--decode-seconds` whole (one call, the reference's default) and
chunked (128-frame windows), each case in its own fresh process; the figure is the growth of the
peak resident set during the decode (VmHWM reset after warm-up).

The GPU figure is `bench/gpu.py`'s `diffrhythm1` case (the published size, dim 2048, depth 16, a
285 s song through the stage engines); it builds on `FULL_CONFIG`, `song_inputs` and
`negative_style` here.

The bench sets OMP_WAIT_POLICY=PASSIVE unless the environment sets it: on a shared machine,
spin-waiting OpenMP threads that lose their core make a run many times slower.

    .venv/bin/python bench/diffrhythm1.py [--threads 2] [--repeats 2] [--seconds 96] [--steps 8]
        [--vae-channels 32] [--decode-seconds 30 60]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.diffusion.diffrhythm1.checkpoint import load_state_dict_strict  # noqa: E402
from services.diffusion.diffrhythm1.dit import FULL_MAX_FRAMES, DiT, DiTConfig  # noqa: E402
from services.diffusion.diffrhythm1.length import duration_input, frame_of  # noqa: E402
from services.diffusion.diffrhythm1.models import random_checkpoint  # noqa: E402
from services.diffusion.diffrhythm1.sampler import CfmSampler, SampledSongs, SongInputs  # noqa: E402
from services.vocoder.diffrhythm1.engine import DecodeOptions, DiffRhythm1Vocoder  # noqa: E402
from services.vocoder.diffrhythm1.models import random_vae  # noqa: E402

BENCH_CONFIG = DiTConfig(dim=512, depth=4, ff_mult=4, conv_layers=4, max_frames=FULL_MAX_FRAMES)
FULL_CONFIG = DiTConfig(max_frames=FULL_MAX_FRAMES)
PUBLISHED_VAE_CHANNELS = 128
CFG_STRENGTH = 4.0


def build_model(config: DiTConfig, device: str = "cpu", dtype: torch.dtype = torch.float32) -> DiT:
    """A DiT of `config` with seeded random weights loaded through the strict checkpoint path."""
    with torch.device("meta"):
        model = DiT(config)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, random_checkpoint(config, 0)["model_state_dict"])
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def song_inputs(seconds: int) -> SongInputs:
    """A full-model song of `seconds` with random lyric tokens on every third frame and a random style."""
    frames = frame_of(seconds)
    rng = np.random.default_rng(seconds)
    tokens = np.where(np.arange(frames) % 3 == 0, rng.integers(1, 364, frames), 0).astype(np.int64)
    style = rng.standard_normal(512).astype(np.float16).astype(np.float32)
    return SongInputs(tokens, style, 0.0, duration_input(frames, FULL_MAX_FRAMES))


def negative_style() -> np.ndarray:
    """The packaged negative style vector, fp16-rounded as the engine uses it."""
    vector = np.load(ROOT / "services/diffusion/diffrhythm1/assets/negative_style.npy")
    return vector.reshape(512).astype(np.float16).astype(np.float32)


def sample_ours(model: DiT, song: SongInputs, steps: int, seed: int = 0) -> np.ndarray:
    """The production sampler's song."""
    *_, result = CfmSampler(model, negative_style()).sample(song, [seed], steps, CFG_STRENGTH)
    assert isinstance(result, SampledSongs)
    return result.latents[0]


def sample_plain(model: DiT, song: SongInputs, steps: int, seed: int = 0) -> np.ndarray:
    """The reference's way: two separate `DiT.forward` calls per Euler update, nothing reused."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(song.frames, model.config.mel_dim, generator=generator)[None].to(device)
    text = torch.from_numpy(song.tokens)[None].to(device)
    style = torch.from_numpy(song.style)[None].to(device, dtype)
    negative = torch.from_numpy(negative_style())[None].to(device, dtype)
    start = torch.tensor([song.start_time], device=device)
    duration = torch.tensor([song.duration], device=device)
    condition = torch.zeros_like(y, dtype=dtype)
    grid = torch.linspace(0, 1, steps)
    with torch.inference_mode():
        for step in range(steps - 1):
            time_now = grid[step].to(device)
            x = y.to(dtype)
            pred = model(x, condition, text, time_now, style, start, duration).float()
            null = model(x, condition, text, time_now, negative, start, duration, True, True).float()
            y = y + (grid[step + 1] - grid[step]).to(device) * (pred + (pred - null) * CFG_STRENGTH)
    return y[0].float().cpu().numpy()


def _status_mib(key: str) -> float:
    """A memory figure from /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def decode_case(chunked: bool, seconds: int, channels: int, threads: int) -> dict:
    """In a fresh process: decode a `seconds` song whole or chunked; wall time and peak RSS growth."""
    torch.set_num_threads(threads)
    vocoder = DiffRhythm1Vocoder(random_vae(channels, 0), torch.device("cpu"), max_frames=10**6)
    latents = np.random.default_rng(seconds).standard_normal((frame_of(seconds), 64)).astype(np.float32)
    vocoder.decode_window(latents[:8])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_mib("VmRSS")
    started = time.perf_counter()
    audio = vocoder.decode(latents, options=DecodeOptions(chunked=chunked))
    wall = time.perf_counter() - started
    return {"wall": wall, "rss_growth_mib": _status_mib("VmHWM") - before, "samples": audio.shape[1]}


def main(argv: list[str] | None = None) -> int:
    """Time both samplers and both decodes and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per sampler; the fastest is kept")
    parser.add_argument("--seconds", type=int, default=96, help="song length, 96..285 (default 96)")
    parser.add_argument("--steps", type=int, default=8, help="Euler grid points (default 8)")
    parser.add_argument("--vae-channels", type=int, default=32, help="VAE width (published 128)")
    parser.add_argument(
        "--decode-seconds",
        type=int,
        nargs="+",
        default=[30, 60],
        help="song lengths to decode (default 30 60)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = build_model(BENCH_CONFIG)
    song = song_inputs(args.seconds)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, sampler in (("ours", sample_ours), ("plain", sample_plain)):
            started = time.perf_counter()
            outputs[name] = sampler(model, song, args.steps)
            times[name].append(time.perf_counter() - started)
    gap = float(np.abs(outputs["ours"] - outputs["plain"]).max())
    best = {name: min(runs) for name, runs in times.items()}
    config = BENCH_CONFIG
    print(
        f"\nDiffRhythm v1 sampling on CPU ({os.cpu_count()} cores, {args.threads} torch threads): "
        f"dim {config.dim}, depth {config.depth}, ff_mult {config.ff_mult}, "
        f"{config.conv_layers} text blocks, "
        f"{args.seconds} s song ({song.frames} frames), {args.steps} grid points, cfg {CFG_STRENGTH:g}, "
        f"fastest of {args.repeats}.\n"
    )
    print("| sampler | s per song | vs plain | max abs diff of latents vs plain |")
    print("| --- | ---: | ---: | ---: |")
    for name, diff in (("plain", 0.0), ("ours", gap)):
        print(f"| {name} | {best[name]:.1f} | {best[name] / best['plain']:.2f}x | {diff:.1e} |")

    context = multiprocessing.get_context("spawn")
    print(
        f"\nOobleck VAE decode on CPU (1 torch thread), width {args.vae_channels}, each case in a fresh "
        "process; peak RSS growth during the decode.\n"
    )
    print("| song | decode | wall s | peak RSS growth MiB | vs whole |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for seconds in args.decode_seconds:
        decodes = {}
        for chunked in (False, True):
            with context.Pool(1) as pool:
                decodes[chunked] = pool.apply(decode_case, (chunked, seconds, args.vae_channels, 1))
        whole = decodes[False]["rss_growth_mib"]
        for chunked, result in decodes.items():
            mode = "chunked (128-frame windows)" if chunked else "whole (one call)"
            print(
                f"| {seconds} s ({frame_of(seconds)} frames) | {mode} | {result['wall']:.1f} | "
                f"{result['rss_growth_mib']:.0f} | {result['rss_growth_mib'] / whole:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
