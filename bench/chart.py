"""Chart stage benchmark: seconds per chart and charts per minute, ours against the reference's
algorithm in a plain form, measured in the same run.

Bench configuration: the released model's sizes (156.5 M parameters with the VAE encoder; UNet
128 channels x [1, 2, 3, 4], audio encoder 128 x [1,1,1,1,2,2,2,4,4,4], S4 layers set up at the
trained length 512) with seeded random weights, a synthetic 10 s song (44.1 kHz stereo, so it is
down-mixed and resampled; latent length 32), the app's default prompt (ranked, star rating 4),
guidance 5 and 10 sampling steps. CPU, one torch thread by default (the cores are shared).

The plain form is the reference app's inference written out in this file with our modules: the audio
encoder run on `count` stacked copies of the song, then per step one UNet call on
[unconditional; conditional] in which every S4 layer rebuilds its kernel with the reference's
expression (the naive Cauchy sum at the stored length 512, one division per pair and mode) and
every attention rebuilds its position terms, with torch's default linear path; then
the note decoder and the same post-processing. Ours is the chart stage's engine: the audio encoder
once, kernels (sharing the divisions) and position terms once per length, one timestep-embedding row,
the per-sample token-wise linears. Both make the same charts (the first chart's latents are compared).

Each form runs `--repeats` times, interleaved, each run from an empty per-length cache; the fastest
run of each is kept. Both forms run on one thread in this process, so the CPU seconds a run used are
the seconds the charts cost this CPU; wall seconds also include waiting for the shared cores (the load
average is printed). Ratios and targets are taken on CPU seconds; the last column gives the wall ratio.

    .venv/bin/python bench/chart.py [--seconds 10] [--steps 10] [--counts 1 4] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from services.chart.engine import Chart, ChartRequest, ChartSettings, SongAudio  # noqa: E402
from services.chart.mug import batch_invariant  # noqa: E402
from services.chart.mug.audio import latent_length, mel_features, padded_features, prepare_song  # noqa: E402
from services.chart.mug.checkpoint import MugDiffusion  # noqa: E402
from services.chart.mug.demo import published_config, random_model  # noqa: E402
from services.chart.mug.engine import MugChartEngine, arrange  # noqa: E402
from services.chart.mug.features import FeaturePrompt  # noqa: E402
from services.chart.mug.hit_objects import notes_to_hit_objects  # noqa: E402
from services.chart.mug.osu import ChartMetadata, osu_text  # noqa: E402
from services.chart.mug.s4 import StateSpaceKernel  # noqa: E402
from services.chart.mug.sampler import visited_timesteps  # noqa: E402
from services.runtime.model_info import ModelInfo  # noqa: E402

SOURCE_RATE = 44100
FEATURES = {"rank_status": "ranked", "sr": 4.0}
SEED = 1234
GUIDANCE = 5.0
TARGET_COUNT_1 = 2.0
TARGET_COUNT_4 = 5.0


def synthetic_song(seconds: float) -> np.ndarray:
    """A stereo click track with a tone on top, [2, samples] float32 at 44.1 kHz."""
    time_s = np.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
    clicks = (np.mod(time_s, 60 / 150) < 0.01) * np.sin(2 * np.pi * 2000 * time_s)
    tone = 0.3 * np.sin(2 * np.pi * 220 * time_s) * (1 + np.sin(2 * np.pi * 0.5 * time_s))
    return np.stack([clicks + tone, 0.5 * clicks - tone]).astype(np.float32) * 0.5


class PlainStateSpaceKernel(StateSpaceKernel):
    """The S4 kernel computed with the reference's expression: one division per (input, output)
    pair and mode, sum_n v[n] / (z - w[n]), on every call."""

    def kernel(self, length: int) -> torch.Tensor:
        """The first `length` taps, [H, length]."""
        c, internal = self.state_for_length(length)
        w, b, p, dt = self._parameters_for_channels()
        omega = torch.tensor(np.exp(-2j * np.pi / internal), dtype=w.dtype) ** torch.arange(internal // 2 + 1)
        z = 2 * (1 - omega) / (1 + omega)
        w = w * dt.unsqueeze(-1)
        v = torch.cat([b, p]).unsqueeze(1) * torch.cat([c, p.conj()]).unsqueeze(0)
        r = (v.unsqueeze(-1) / (z.unsqueeze(-2) - w.unsqueeze(-1))).sum(dim=-2) * dt[None, None, :, None]
        spectrum = (r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])) * 2 / (1 + omega)
        return torch.fft.irfft(spectrum, n=internal)[0, 0, :, :length]


def reference_paths(model: MugDiffusion) -> MugDiffusion:
    """A copy of `model` computed as the reference computes it: torch's default linear path, and the
    S4 kernel rebuilt with the reference's expression."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, batch_invariant.Linear):
            module.__class__ = nn.Linear
        elif isinstance(module, StateSpaceKernel):
            module.__class__ = PlainStateSpaceKernel
    return plain


def plain_charts(model: MugDiffusion, prompt: FeaturePrompt, pcm: np.ndarray, steps: int, count: int) -> list:
    """The reference app's inference for `count` charts, written plainly (see the module docstring)."""
    config = model.config
    song = prepare_song(pcm, SOURCE_RATE, config.audio, "pcm", 600)
    mel = mel_features(song, config.audio)
    length = latent_length(mel.shape[1], config.frames_per_latent)
    features = padded_features(mel, length * config.frames_per_latent)
    with torch.inference_mode():
        audio = model.wave_model(torch.from_numpy(np.stack([features] * count)))[
            -len(config.unet.channel_mult) :
        ]
        conditional = model.embedding(torch.tensor([prompt.ids(FEATURES)] * count))
        unconditional = model.embedding(torch.tensor([prompt.unconditional_ids()] * count))
        torch.manual_seed(SEED)
        x = torch.randn(count, config.z_channels, length)
        alphas = model.alphas_cumprod
        timesteps = visited_timesteps(steps, config.timesteps)
        for index, step in enumerate(timesteps):
            x_in = torch.cat([x] * 2)
            t_in = torch.full((2 * count,), step, dtype=torch.long)
            c_in = torch.cat([unconditional, conditional])
            w_in = [torch.cat([level] * 2) for level in audio]
            e_u, e_c = model.unet_model(x_in, t_in, c_in, w_in).chunk(2)
            eps = e_u + GUIDANCE * (e_c - e_u)
            a_t = alphas[step]
            a_prev = alphas[timesteps[index + 1]] if index + 1 < len(timesteps) else alphas[0]
            x0 = (x - torch.sqrt(1.0 - a_t) * eps) / a_t.sqrt()
            x = a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps
        notes = model.decoder(x).numpy()
    charts = []
    for index in range(count):
        hits = notes_to_hit_objects(notes[index], config.audio.note_frame_ms)
        grid, hits = arrange(hits, True, 90)
        metadata = ChartMetadata("audio.mp3", "bench", "bench", "MuG Diffusion", f"AI v{index + 1}", "")
        charts.append((x[index].numpy(), osu_text(hits, grid, metadata)))
    return charts


def our_charts(engine: MugChartEngine, pcm: np.ndarray, steps: int, count: int) -> list:
    """The chart stage's engine for the same request, from an empty per-length cache."""
    engine.clear_plans()
    request = ChartRequest(
        audio=SongAudio(pcm=pcm, sample_rate=SOURCE_RATE),
        features=FEATURES,
        seed=SEED,
        steps=steps,
        guidance=GUIDANCE,
        count=count,
    )
    return [(event.latents, event.osu) for event in engine.generate(request) if isinstance(event, Chart)]


def timed(run, *args) -> tuple[float, float, list]:
    """(wall seconds, this process's CPU seconds, result) of one run."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run(*args)
    return time.perf_counter() - started, time.process_time() - cpu, result


def main() -> int:
    """Run both forms at every count, print the table, and return 1 if a target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="song length")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4], help="charts per request")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, prompt = random_model(published_config())
    model.eval()
    plain_model = reference_paths(model)
    info = ModelInfo(name="bench", family="mug", revision="random")
    engine = MugChartEngine(model, prompt, info, ChartSettings(max_count=max(args.counts)))
    pcm = synthetic_song(args.seconds)
    warm = synthetic_song(1.0)
    plain_charts(plain_model, prompt, warm, 1, 1)
    our_charts(engine, warm, 1, 1)

    best: dict[tuple[str, int], float] = {}
    best_cpu: dict[tuple[str, int], float] = {}
    first_latents: dict[str, np.ndarray] = {}
    runs = {
        "plain": lambda count: plain_charts(plain_model, prompt, pcm, args.steps, count),
        "ours": lambda count: our_charts(engine, pcm, args.steps, count),
    }
    for _ in range(args.repeats):
        for count in args.counts:
            for form, run in runs.items():
                wall, cpu, charts = timed(run, count)
                best[(form, count)] = min(wall, best.get((form, count), float("inf")))
                best_cpu[(form, count)] = min(cpu, best_cpu.get((form, count), float("inf")))
                first_latents.setdefault(form, charts[0][0])
                print(f"{form} count {count}: {wall:.1f} s", file=sys.stderr, flush=True)

    parameters = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    length = latent_length(1 + int(args.seconds * 22050) // 128, 64)
    visited = len(visited_timesteps(args.steps, 1000))
    print(
        f"\nChart stage on CPU ({os.cpu_count()} cores, {args.threads} torch thread(s), load average "
        f"{os.getloadavg()[0]:.1f}): released model sizes ({parameters / 1e6:.1f} M network tensors, random "
        f"weights), {args.seconds:g} s song (L = {length}), {args.steps} steps ({visited} visited), guidance "
        f"{GUIDANCE:g}; fastest of {args.repeats} interleaved runs. No GPU measured.\n"
    )
    first = args.counts[0]
    base_cpu = best_cpu[("plain", first)] / first
    base_wall = best[("plain", first)] / first
    print(
        "| form | count | wall s | wall s per chart | CPU s per chart | charts per CPU minute "
        f"| vs plain, same count (CPU) | vs plain count {first} (CPU) | vs plain count {first} (wall) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in args.counts:
        for form in ("plain", "ours"):
            wall, cpu = best[(form, count)] / count, best_cpu[(form, count)] / count
            same = best_cpu[("plain", count)] / best_cpu[(form, count)]
            print(
                f"| {form} | {count} | {best[(form, count)]:.1f} | {wall:.2f} | {cpu:.2f} | {60 / cpu:.1f} | "
                f"{same:.2f}x | {base_cpu / cpu:.2f}x | {base_wall / wall:.2f}x |"
            )
    drift = float(np.abs(first_latents["plain"] - first_latents["ours"]).max())
    print(f"\nFirst chart, plain vs ours: max |latent difference| {drift:.2e} (same seed, same algorithm).")
    missed = []
    if 1 in args.counts and best_cpu[("plain", 1)] / best_cpu[("ours", 1)] < TARGET_COUNT_1:
        missed.append(f"count 1: less than {TARGET_COUNT_1:g}x faster than the plain form")
    if 1 in args.counts and 4 in args.counts and base_cpu / (best_cpu[("ours", 4)] / 4) < TARGET_COUNT_4:
        missed.append(f"count 4: less than {TARGET_COUNT_4:g}x the plain form's charts per minute")
    for line in missed:
        print(f"TARGET MISSED (CPU seconds): {line}")
    if not missed:
        print(
            f"Targets met (CPU seconds): >= {TARGET_COUNT_1:g}x faster at count 1, "
            f">= {TARGET_COUNT_4:g}x the charts per minute at count 4, against the plain form at count 1."
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
