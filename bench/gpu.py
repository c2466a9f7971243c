"""GPU benchmark: full-size models with random weights, song after song and many songs at once.

A table of named cases (`CASES`). Each case measures one family on the given device: seconds per
song, time to first audio, peak GPU memory and songs per hour, for each number of concurrent songs
in `--counts` (default 1, 16, 64). The in-run baseline of every row is the same case at N = 1:
the "vs N=1" column is its songs per hour over N = 1's.

DiffRhythm 2 (`diffrhythm2`, `diffrhythm2+compile`): the published shapes exactly (DiT dim 2048,
depth 16, heads 16, ff_mult 4, repa_dims [1024, 768], the REPA projectors dropped as after a load;
decoder upsample_initial_channel 1536 with the published rates and kernels), seeded random weights,
the DiT in `--dtype` (bfloat16) and the decoder in float32 (the vocoder stage has no half-precision
setting); a 210 s song at 16 steps and cfg 2.0 with 300 lyric tokens (random weights never sing the
end marker, so every song is the full 210 s). The songs go through the stage engines as the servers
run them: `DiffusionEngine.generate` from one thread per song (continuous batching, up to N songs per
step) and a streaming decode per song whose windows the vocoder batches (16 at a time on CUDA).
First audio is the first final PCM of a song, counted from its submission (2 blocks, then one window
decode). `+compile` wraps each transformer block's MLP in `torch.compile(dynamic=True)`; the
attention and its cache stay eager (the history grows every block, which rules out CUDA graphs of
the whole step without attending over the full capacity).

DiffRhythm v1 (`diffrhythm1`): the published DiT size (dim 2048, depth 16, 32 heads, ff_mult 4, 4
text blocks, the full 6144-frame model with its duration embedding) in `--dtype`, seeded random
weights, and the Oobleck VAE at the published width (128) in float32; a 285 s song (6136 frames)
whatever `--seconds` says (v1 makes 95 s or 96..285 s songs; `--tiny`: the demo DiT and VAE widths
and a 96 s song, 2067 frames), `--steps` Euler grid points (the reference's default is 32) and cfg
4.0. N songs at once are sampled as the reference batches them: requests of up to 8 candidates
(`DiffRhythm1Options.candidates`), ceil(N / 8) of them from one thread each, through
`DiffRhythm1Engine.generate`; each candidate is decoded by its own streaming decode (128-frame
windows), one after the other as the gateway does. First audio is the first final PCM of a request
(after the whole song is sampled and one window decoded), seconds per song the request's total.

MusicGen (`musicgen-small`, `musicgen-medium`, and `+batch` of each): the published LM shapes
(small: width 1024, 24 layers, 16 heads; medium: 1536, 48, 24; FFN 4x; 4 codebooks of 2048) and the
real EnCodec 32 kHz shapes, seeded random weights, the LM in `--dtype` and EnCodec in float32; a
song of `--seconds` (past 30 s in 30 s windows every 18 s, as AudioCraft extends) at cfg 3, top-k
250, from the states of a 12-token prompt (T5-base width 768; the style stage's one T5 forward per
song is not counted). As the servers run them, each song runs from its own thread through
`MusicgenEngine.generate` (its own forward every step: the generation stage does not batch MusicGen
songs yet) into its own streaming EnCodec decoder; `+batch` runs the N songs in lockstep through
`generate_batch` (one batched forward per step, the songs' streams decoded as their blocks arrive),
what batching MusicGen in the stage would give. First audio is counted from the song's submission
to its first streamed PCM (its first 1 s block, then EnCodec's 4 frames of look-ahead). The table's
steps and cfg line is DiffRhythm 2's; MusicGen's cfg is 3 and it has no steps.

Another family adds its cases by writing a function `Target -> list[Figures]` (usually around the
full-size function its own bench module already has, e.g. `bench/diffrhythm1.py`) and an entry in
`CASES`; the table, the options and the CPU smoke test come with it.

`--tiny` runs every case at tiny shapes with short songs (the CPU test does, so this file cannot
rot). The first line printed names the device (the card's name on CUDA).

    .venv/bin/python -m bench.gpu [--cases diffrhythm2,diffrhythm2+compile] [--counts 1,16,64]
        [--dtype bfloat16] [--seconds 210] [--steps 16] [--tiny] [--device cuda]
    .venv/bin/python -m bench.gpu --cases diffrhythm1 --steps 32 --counts 1,8   # v1's headline
    .venv/bin/python -m bench.gpu --cases musicgen-small,musicgen-medium,musicgen-medium+batch \
        --counts 1,16 --seconds 30
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from bench.diffrhythm1 import FULL_CONFIG as DIFFRHYTHM1_FULL
from bench.diffrhythm1 import PUBLISHED_VAE_CHANNELS, negative_style, song_inputs
from bench.musicgen import GPU_DECODERS, REAL_CODEC, T5_BASE, bench_config, random_codec, random_lm
from bench.musicgen import sampling_request as musicgen_request
from services.diffusion.batching import BatchLimits
from services.diffusion.diffrhythm1.dit import FULL_MAX_FRAMES as DIFFRHYTHM1_FRAMES
from services.diffusion.diffrhythm1.dit import DiT as DiffRhythm1DiT
from services.diffusion.diffrhythm1.dit import DiTConfig as DiffRhythm1Config
from services.diffusion.diffrhythm1.engine import DiffRhythm1Engine
from services.diffusion.diffrhythm1.length import frame_of
from services.diffusion.diffrhythm1.models import DEMO_CONFIG as DIFFRHYTHM1_DEMO
from services.diffusion.diffrhythm1.options import MAX_CANDIDATES, DiffRhythm1Options
from services.diffusion.diffrhythm2.dit import COND_DIM, DiT, DiTConfig
from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.diffusion.engine import GeneratedBlock, GenerationRequest
from services.diffusion.musicgen.demo import demo_config
from services.diffusion.musicgen.engine import MusicgenEngine
from services.vocoder.diffrhythm1.engine import DiffRhythm1Vocoder
from services.vocoder.diffrhythm1.models import DEMO_CHANNELS as DIFFRHYTHM1_DEMO_VAE
from services.vocoder.diffrhythm1.models import random_vae
from services.vocoder.diffrhythm2.bigvgan import BigVGANGenerator, DecoderConfig
from services.vocoder.diffrhythm2.demo import DEMO_CONFIG
from services.vocoder.diffrhythm2.engine import VocoderEngine
from services.vocoder.musicgen.engine import MusicgenVocoderEngine

FULL_DIT = DiTConfig()  # the published config.json: dim 2048, depth 16, heads 16, ff_mult 4
FULL_DECODER = {**DEMO_CONFIG, "upsample_initial_channel": 1536}  # the published decoder.json
TINY_DIT = DiTConfig(dim=64, depth=2, heads=2, ff_mult=2, repa_depth=1, repa_dims=(32,))
TINY_DECODER = {
    **DEMO_CONFIG,
    "upsample_rates": [10, 10, 12, 8],
    "upsample_kernel_sizes": [20, 20, 24, 16],
    "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1]],
}
LYRIC_TOKENS = 300
CFG_STRENGTH = 2.0
FRAMES_PER_SECOND = 5
MUSICGEN_FRAME_RATE = 50
MUSICGEN_PROMPT_TOKENS = 12
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where and how the cases run: device, model dtype, shapes (tiny for the CPU smoke run), song
    length, steps, the numbers of concurrent songs and the torch.compile backend."""

    device: str
    dtype: torch.dtype
    tiny: bool
    seconds: float
    steps: int
    counts: tuple[int, ...]
    compile_backend: str = "inductor"

    @property
    def cuda(self) -> bool:
        """Whether timings need CUDA synchronisation and peak memory exists."""
        return torch.device(self.device).type == "cuda"


@dataclass(frozen=True)
class Figures:
    """One row: a case at N concurrent songs."""

    case: str
    concurrent: int
    song_seconds: float
    seconds_per_song: float
    first_audio_s: float
    peak_gib: float
    songs_per_hour: float


def device_name(device: str) -> str:
    """The card's name on CUDA, else the CPU's model name."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _reset_peak(target: Target) -> None:
    if target.cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(target: Target) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if target.cuda else float("nan")


def diffrhythm2_models(target: Target, compiled: bool) -> tuple[DiT, VocoderEngine]:
    """The DiT and the decoder at the target's shapes, seeded random weights, on its device."""
    torch.manual_seed(0)
    with torch.device(target.device):
        model = DiT(TINY_DIT if target.tiny else FULL_DIT)
        generator = BigVGANGenerator(DecoderConfig.from_dict(TINY_DECODER if target.tiny else FULL_DECODER))
    model.drop_repa_projectors()
    model = model.to(target.dtype).eval().requires_grad_(False)
    if compiled:
        for block in model.transformer_blocks:
            block.mlp = torch.compile(block.mlp, dynamic=True, backend=target.compile_backend)
    frames = round(target.seconds * FRAMES_PER_SECOND)
    vocoder = VocoderEngine(generator.eval().requires_grad_(False), torch.device(target.device), frames)
    return model, vocoder


def _song_request(seed: int, target: Target) -> GenerationRequest:
    rng = np.random.default_rng(seed)
    style = rng.standard_normal(COND_DIM).astype(np.float32)
    return GenerationRequest(
        tokens=rng.integers(1, 1001, LYRIC_TOKENS).astype(np.int64),
        style=style / np.linalg.norm(style),
        seed=seed,
        steps=target.steps,
        cfg_strength=CFG_STRENGTH,
        max_frames=round(target.seconds * FRAMES_PER_SECOND),
    )


def _one_song(
    engine: DiffusionEngine, vocoder: VocoderEngine, request: GenerationRequest
) -> tuple[float, float]:
    """Generate and stream-decode one song; returns (seconds to its first PCM, seconds in all)."""
    started = time.perf_counter()
    first_audio = float("nan")
    decoder = vocoder.stream()
    for event in engine.generate(request):
        if isinstance(event, GeneratedBlock) and decoder.push(event.frames) and first_audio != first_audio:
            first_audio = time.perf_counter() - started
    decoder.finish()
    if first_audio != first_audio:
        first_audio = time.perf_counter() - started
    return first_audio, time.perf_counter() - started


def _songs_at_once(
    engine: DiffusionEngine,
    vocoder: VocoderEngine,
    target: Target,
    concurrent: int,
    song_request: Callable[[int, Target], GenerationRequest] = _song_request,
) -> tuple[list[tuple[float, float]], float]:
    """`concurrent` songs submitted at once, one thread each (song i is `song_request(i, target)`);
    their (first audio, total) seconds and the wall time of the lot."""
    return _at_once(
        [
            functools.partial(_one_song, engine, vocoder, song_request(index, target))
            for index in range(concurrent)
        ]
    )


def _at_once(work: list[Callable[[], T]]) -> tuple[list[T], float]:
    """Every call of `work` at once, one thread each: their results in order and the wall time of the
    lot; the first failure is raised once every thread has ended."""
    results: list[T | BaseException] = [RuntimeError("not run")] * len(work)

    def run(index: int) -> None:
        try:
            results[index] = work[index]()
        except BaseException as error:  # raised below, once every thread has ended
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(work))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results, wall


def diffrhythm2_case(target: Target, compiled: bool) -> list[Figures]:
    """DiffRhythm 2 through its stage engines, N songs at once for each N of the target."""
    name = "diffrhythm2+compile" if compiled else "diffrhythm2"
    model, vocoder = diffrhythm2_models(target, compiled)
    frames = round(target.seconds * FRAMES_PER_SECOND)
    rows = []
    for concurrent in target.counts:
        engine = DiffusionEngine(model, frames, limits=BatchLimits(max_batch=concurrent, max_queue=0))
        engine.warm_up()
        vocoder.warm_up()
        _reset_peak(target)
        songs, wall = _songs_at_once(engine, vocoder, target, concurrent)
        rows.append(
            Figures(
                case=name,
                concurrent=concurrent,
                song_seconds=target.seconds,
                seconds_per_song=statistics.median(total for _, total in songs),
                first_audio_s=statistics.median(first for first, _ in songs),
                peak_gib=_peak_gib(target),
                songs_per_hour=3600 * concurrent / wall,
            )
        )
        engine.close()
    vocoder.close()
    return rows


DIFFRHYTHM1_CFG = 4.0
DIFFRHYTHM1_SECONDS = 285  # 6136 frames, the full model's longest song
DIFFRHYTHM1_TINY_SECONDS = 96  # 2067 frames, its shortest


def diffrhythm1_models(target: Target) -> tuple[DiffRhythm1Engine, DiffRhythm1Vocoder]:
    """The v1 DiT (full model) and the VAE at the target's shapes, seeded random weights, on its
    device: the DiT in the target's dtype, the VAE in float32."""
    config = (
        DiffRhythm1Config(**DIFFRHYTHM1_DEMO, max_frames=DIFFRHYTHM1_FRAMES)
        if target.tiny
        else DIFFRHYTHM1_FULL
    )
    torch.manual_seed(0)
    with torch.device(target.device):
        model = DiffRhythm1DiT(config)
    model = model.to(target.dtype).eval().requires_grad_(False)
    width = DIFFRHYTHM1_DEMO_VAE if target.tiny else PUBLISHED_VAE_CHANNELS
    vae = random_vae(width, 0).to(target.device)
    vocoder = DiffRhythm1Vocoder(vae, torch.device(target.device), DIFFRHYTHM1_FRAMES)
    return DiffRhythm1Engine(model, negative_style()), vocoder


def _diffrhythm1_request(
    engine: DiffRhythm1Engine,
    vocoder: DiffRhythm1Vocoder,
    seconds: int,
    seed: int,
    candidates: int,
    steps: int,
) -> tuple[float, float]:
    """One request of `candidates` songs sampled together, each candidate stream-decoded in turn;
    returns (seconds to its first final PCM, seconds in all)."""
    song = song_inputs(seconds)
    request = GenerationRequest(
        tokens=song.tokens,
        style=song.style,
        seed=seed,
        steps=steps,
        cfg_strength=DIFFRHYTHM1_CFG,
        seconds=seconds,
        options=DiffRhythm1Options(candidates=candidates),
    )
    started = time.perf_counter()
    first_audio = float("nan")
    candidate, decoder = -1, None
    for event in engine.generate(request):
        if not isinstance(event, GeneratedBlock):
            continue
        if event.candidate != candidate:
            if decoder is not None:
                decoder.finish()
            candidate, decoder = event.candidate, vocoder.stream()
        if decoder.push(event.frames) and first_audio != first_audio:
            first_audio = time.perf_counter() - started
    if decoder is not None:
        decoder.finish()
    if first_audio != first_audio:
        first_audio = time.perf_counter() - started
    return first_audio, time.perf_counter() - started


def _diffrhythm1_at_once(
    engine: DiffRhythm1Engine, vocoder: DiffRhythm1Vocoder, seconds: int, concurrent: int, steps: int
) -> tuple[list[tuple[float, float]], float]:
    """`concurrent` songs as requests of up to 8 candidates, one thread each; their (first audio,
    total) seconds and the wall time of the lot."""
    sizes = [min(MAX_CANDIDATES, concurrent - start) for start in range(0, concurrent, MAX_CANDIDATES)]
    return _at_once(
        [
            functools.partial(
                _diffrhythm1_request, engine, vocoder, seconds, index * MAX_CANDIDATES, size, steps
            )
            for index, size in enumerate(sizes)
        ]
    )


def diffrhythm1_case(target: Target) -> list[Figures]:
    """DiffRhythm v1 through its stage engines: N songs as ceil(N / 8) concurrent requests of up to 8
    candidates each, for each N of the target (see the module docstring)."""
    engine, vocoder = diffrhythm1_models(target)
    seconds = DIFFRHYTHM1_TINY_SECONDS if target.tiny else DIFFRHYTHM1_SECONDS
    engine.warm_up()
    vocoder.warm_up()
    rows = []
    for concurrent in target.counts:
        _reset_peak(target)
        requests, wall = _diffrhythm1_at_once(engine, vocoder, seconds, concurrent, target.steps)
        rows.append(
            Figures(
                case="diffrhythm1",
                concurrent=concurrent,
                song_seconds=frame_of(seconds) * 2048 / 44100,
                seconds_per_song=statistics.median(total for _, total in requests),
                first_audio_s=statistics.median(first for first, _ in requests),
                peak_gib=_peak_gib(target),
                songs_per_hour=3600 * concurrent / wall,
            )
        )
    return rows


def musicgen_models(target: Target, size: str) -> tuple[MusicgenEngine, MusicgenVocoderEngine]:
    """MusicGen `size`'s LM and EnCodec at the target's shapes (the demo's tiny ones with --tiny),
    seeded random weights, on its device."""
    config = demo_config("mono") if target.tiny else bench_config(GPU_DECODERS[size], REAL_CODEC, T5_BASE)
    engine = MusicgenEngine(random_lm(config, target.device, target.dtype))
    codec = random_codec(config, target.device)
    frames = round(target.seconds * MUSICGEN_FRAME_RATE)
    vocoder = MusicgenVocoderEngine(codec, engine.config.num_codebooks, engine.config.audio_channels, frames)
    return engine, vocoder


def _musicgen_request(index: int, target: Target, width: int) -> GenerationRequest:
    """Song `index`: the states of a 12-token prompt (random, unit scale), seed `index`."""
    states = np.random.default_rng(index).standard_normal((MUSICGEN_PROMPT_TOKENS, width)).astype(np.float32)
    return musicgen_request(states, round(target.seconds * MUSICGEN_FRAME_RATE), seed=index)


def _musicgen_lockstep(
    engine: MusicgenEngine, vocoder: MusicgenVocoderEngine, target: Target, concurrent: int
) -> tuple[list[tuple[float, float]], float]:
    """`concurrent` songs in one `generate_batch` (one forward per step for all), each song's blocks
    streamed into its own decoder as they come; their (first audio, total) seconds and the wall time."""
    width = engine.config.text_hidden_size
    requests = [_musicgen_request(index, target, width) for index in range(concurrent)]
    decoders = [vocoder.stream() for _ in requests]
    first = [float("nan")] * concurrent
    started = time.perf_counter()
    for step in engine.generate_batch(requests):
        for index, block in enumerate(step):
            if decoders[index].push(block.frames) and first[index] != first[index]:
                first[index] = time.perf_counter() - started
    for decoder in decoders:
        decoder.finish()
    wall = time.perf_counter() - started
    return [(wall if f != f else f, wall) for f in first], wall


def musicgen_case(target: Target, size: str, batched: bool) -> list[Figures]:
    """MusicGen `size` through its stage engines, N songs at once for each N of the target: one
    thread per song (as served), or in lockstep with `batched`."""
    engine, vocoder = musicgen_models(target, size)
    width = engine.config.text_hidden_size
    rows = []
    for concurrent in target.counts:
        engine.warm_up()
        vocoder.warm_up()
        _reset_peak(target)
        if batched:
            songs, wall = _musicgen_lockstep(engine, vocoder, target, concurrent)
        else:
            request = functools.partial(_musicgen_request, width=width)
            songs, wall = _songs_at_once(engine, vocoder, target, concurrent, request)
        rows.append(
            Figures(
                case=f"{size}+batch" if batched else size,
                concurrent=concurrent,
                song_seconds=target.seconds,
                seconds_per_song=statistics.median(total for _, total in songs),
                first_audio_s=statistics.median(first for first, _ in songs),
                peak_gib=_peak_gib(target),
                songs_per_hour=3600 * concurrent / wall,
            )
        )
    return rows


CASES: dict[str, Callable[[Target], list[Figures]]] = {
    "diffrhythm2": functools.partial(diffrhythm2_case, compiled=False),
    "diffrhythm2+compile": functools.partial(diffrhythm2_case, compiled=True),
    "diffrhythm1": diffrhythm1_case,
    "musicgen-small": functools.partial(musicgen_case, size="musicgen-small", batched=False),
    "musicgen-medium": functools.partial(musicgen_case, size="musicgen-medium", batched=False),
    "musicgen-small+batch": functools.partial(musicgen_case, size="musicgen-small", batched=True),
    "musicgen-medium+batch": functools.partial(musicgen_case, size="musicgen-medium", batched=True),
}


def print_table(rows: list[Figures], target: Target) -> None:
    """The markdown table; "vs N=1" compares songs per hour with the same case's N = 1 row."""
    print(
        f"\n{'tiny shapes' if target.tiny else 'published shapes'}, random weights, "
        f"{str(target.dtype).removeprefix('torch.')}, {target.steps} steps, "
        f"cfg {CFG_STRENGTH:g} (diffrhythm1: {DIFFRHYTHM1_CFG:g})\n"
    )
    print("| case | N | song s | s per song | first audio s | peak GiB | songs/hour | vs N=1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    solo = {row.case: row.songs_per_hour for row in rows if row.concurrent == 1}
    for row in rows:
        ratio = f"{row.songs_per_hour / solo[row.case]:.2f}x" if row.case in solo else "-"
        print(
            f"| {row.case} | {row.concurrent} | {row.song_seconds:.1f} | {row.seconds_per_song:.2f} | "
            f"{row.first_audio_s:.2f} | {row.peak_gib:.2f} | {row.songs_per_hour:.0f} | {ratio} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases on the device and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--counts", default="1,16,64", help="concurrent songs, comma-separated")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--seconds", type=float, default=210.0)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU smoke test)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of +compile")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    target = Target(
        device=args.device,
        dtype=getattr(torch, args.dtype),
        tiny=args.tiny,
        seconds=args.seconds,
        steps=args.steps,
        counts=tuple(int(n) for n in args.counts.split(",")),
        compile_backend=args.compile_backend,
    )
    print(f"device: {device_name(args.device)} ({args.device}), torch {torch.__version__}", flush=True)
    rows = [row for name in args.cases.split(",") for row in CASES[name](target)]
    print_table(rows, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
