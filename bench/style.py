"""Style encoder benchmark: prompts per second (cold and cached) and the audio path's real-time factor.

Two model sizes, both random weights on CPU:

- `fixture`: the parity fixture tests/fixtures/muq-mulan-tiny (MuQ 64 x 2, XLM-R 48 x 2, heads 32 x 2);
- `medium`: `services.style.muq_mulan.demo.MEDIUM` (MuQ 256 x 4 with 64 conv channels, XLM-R 256 x 4, heads
  256 x 2), written to a temporary folder by the demo writer.

Same-run baselines: cached prompts against cold prompts (the LRU cache's gain), the whole-recording
path (every 10 s clip) against one random 10 s crop, and audio decoding + resampling (a 44.1 kHz
stereo FLAC) against the whole embedding call. No real weights are available here; `--real-shapes`
adds random weights at the published model's shapes (MuQ 1024 x 12, XLM-R base, MuLan heads 768 x 8;
only XLM-R's vocabulary is the demo tokenizer's 472 tokens), with 8 prompts and a 20 s recording.
No GPU was available when this was written. One torch thread by default: on a shared 2-core machine,
two spinning intra-op threads slow small models down by an order of magnitude.

    .venv/bin/python bench/style.py [--prompts 48] [--seconds 30] [--threads 1] [--real-shapes]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from services.style.audio_io import decode_audio  # noqa: E402
from services.style.engine import StyleLimits  # noqa: E402
from services.style.muq_mulan.demo import MEDIUM, REAL_SHAPES, write_demo_model  # noqa: E402
from services.style.muq_mulan.engine import StyleEngine  # noqa: E402

FIXTURE_CHECKPOINT = ROOT / "tests" / "fixtures" / "muq-mulan-tiny" / "MuQ-MuLan-tiny"
GENRES = ["pop", "rock", "jazz", "lofi", "metal", "folk", "techno", "soul", "ambient", "funk", "blues"]
MOODS = ["happy", "sad", "dreamy", "dark", "calm", "epic", "warm", "bright"]
LIMITS = StyleLimits(max_audio_seconds=3600.0, max_audio_bytes=1 << 30)


def prompts(count: int) -> list[str]:
    """`count` distinct, realistic style prompts."""
    return [
        f"{GENRES[i % len(GENRES)]}, {MOODS[(i // len(GENRES)) % len(MOODS)]}, piano, drums, take {i}"
        for i in range(count)
    ]


def best_of(repeats: int, run: Callable[[], None]) -> float:
    """The fastest of `repeats` timings of `run`, in seconds (the least disturbed by other load)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def recording(seconds: float, rate: int, channels: int, file_format: str, subtype: str) -> bytes:
    """A synthetic chord-plus-noise recording encoded in memory."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.2
    wave = np.stack([chord + 0.01 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def measure(
    name: str, checkpoint: Path, n_prompts: int, seconds: float, repeats: int
) -> list[tuple[str, str, str, str]]:
    """Rows (measure, value, baseline, ratio) for one model; timings are the best of `repeats`."""
    rows: list[tuple[str, str, str, str]] = []
    start = time.perf_counter()
    engine = StyleEngine.load(checkpoint, limits=LIMITS, text_cache_size=4 * n_prompts, warm_up=True)
    rows.append((f"{name}: load + warm-up (s)", f"{time.perf_counter() - start:.2f}", "—", "—"))

    texts = prompts(n_prompts)
    uncached = StyleEngine(engine.loaded, LIMITS, 0, "cpu")
    cold_seconds = best_of(repeats, lambda: [uncached.embed_text(p).vector for p in texts])
    for prompt in texts:
        engine.embed_text(prompt)
    cached_seconds = best_of(repeats, lambda: [engine.embed_text(p).vector for p in texts])
    cold_rate, cached_rate = n_prompts / cold_seconds, n_prompts / cached_seconds
    rows.append((f"{name}: text, cold (prompts/s)", f"{cold_rate:,.1f}", "—", "1.00"))
    rows.append(
        (
            f"{name}: text, cached (prompts/s)",
            f"{cached_rate:,.0f}",
            f"cold {cold_rate:,.1f}",
            f"{cached_rate / cold_rate:,.0f}x",
        )
    )

    wav = recording(seconds, 24000, 1, "WAV", "FLOAT")
    whole = best_of(repeats, lambda: engine.embed_audio(wav))
    crop = best_of(repeats, lambda: engine.embed_audio(wav, crop="random", seed=1))
    clips = engine.embed_audio(wav).clips
    rows.append(
        (
            f"{name}: audio whole {seconds:.0f} s, {clips} clips (RTF)",
            f"{whole / seconds:.4f}",
            f"crop RTF {crop / seconds:.4f}",
            f"{whole / crop:.2f}x time",
        )
    )
    rows.append((f"{name}: audio per 10 s clip (s)", f"{whole / clips:.3f}", "—", "—"))
    flac = recording(seconds, 44100, 2, "FLAC", "PCM_16")
    decode = best_of(repeats, lambda: decode_audio(flac, 24000, LIMITS))
    whole_flac = best_of(repeats, lambda: engine.embed_audio(flac))
    rows.append(
        (
            f"{name}: decode+resample 44.1 kHz stereo FLAC (s)",
            f"{decode:.3f}",
            f"whole call {whole_flac:.3f} s",
            f"{decode / whole_flac:.1%} of it",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the sizes asked for and print one markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=48, help="distinct prompts per text measurement")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the benchmark recording")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--real-shapes", action="store_true", help="also the published model's shapes (slow: minutes)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure("fixture", FIXTURE_CHECKPOINT, args.prompts, args.seconds, repeats=3)
    with tempfile.TemporaryDirectory() as folder:
        rows += measure(
            "medium", write_demo_model(Path(folder) / "medium", MEDIUM), args.prompts, args.seconds, repeats=3
        )
        if args.real_shapes:
            checkpoint = write_demo_model(Path(folder) / "real", REAL_SHAPES)
            rows += measure("real shapes", checkpoint, 8, 20.0, repeats=1)
    print(f"Style encoder on CPU ({args.threads} thread(s), torch {torch.__version__}); no GPU here.")
    print("RTF = processing time / recording length (lower is faster).\n")
    print("| measure | value | same-run baseline | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
