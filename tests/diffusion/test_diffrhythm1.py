"""DiffRhythm v1 generation: parity with the reference fixture, the sampler against the plain
algorithm of the notes (edit mode included), candidates, strict checkpoints and request errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
import torch
from torch.nn import functional

from services.diffusion.diffrhythm1 import FAMILY
from services.diffusion.diffrhythm1.checkpoint import CheckpointError, load_dit
from services.diffusion.diffrhythm1.dit import DiT
from services.diffusion.diffrhythm1.engine import BLOCK_FRAMES, DiffRhythm1Engine
from services.diffusion.diffrhythm1.length import duration_input, frame_of
from services.diffusion.diffrhythm1.models import write_demo_generator
from services.diffusion.diffrhythm1.options import DiffRhythm1Options, EditSpan, parse_options
from services.diffusion.engine import GeneratedBlock, GenerationProgress, GenerationRequest
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.errors import InvalidArgumentError
from services.runtime.model_info import MANIFEST_FILE, sha256_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm1-tiny"
CASE = json.loads((FIXTURE / "case.json").read_text(encoding="utf-8"))
MODEL_FILES = ("cfm_model.pt", "config.json", "negative_style.npy")


@pytest.fixture(autouse=True, scope="module")
def single_thread_torch():
    """One intra-op thread: the machine's cores are shared, and spin-waiting OpenMP threads on a busy
    machine make these small models many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def engine() -> DiffRhythm1Engine:
    """The tiny reference model (a full, 6144-frame model) loaded by our engine."""
    return DiffRhythm1Engine.load(FIXTURE)


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    """The fixture's style vector [512]."""
    return np.load(FIXTURE / "style.npy").reshape(512)


def tensor(name: str) -> torch.Tensor:
    """A fixture array as a batch of one."""
    return torch.from_numpy(np.load(FIXTURE / name))[None]


def song(events) -> tuple[list[GenerationProgress], np.ndarray]:
    """The progress events and the concatenated latents of a single-song stream."""
    events = list(events)
    progress = [event for event in events if isinstance(event, GenerationProgress)]
    blocks = [event for event in events if isinstance(event, GeneratedBlock)]
    return progress, np.concatenate([block.frames for block in blocks])


def invalid(engine: DiffRhythm1Engine, **fields) -> list[tuple[str, str]]:
    """The field violations `engine.generate` raises at once for a request with `fields`."""
    with pytest.raises(InvalidArgumentError) as exc:
        engine.generate(GenerationRequest(**fields))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return [(violation.field, violation.description) for violation in exc.value.violations]


def reference_sample(model: DiT, tokens, style, seed, steps, cfg, seconds, encoding=None, spans=()):
    """The sampler of the notes, call by call: two separate DiT calls per Euler update (the
    unconditional one with the negative style, no edit condition and no text), the reference
    latent of an edit drawn before the noise from the same seeded generator."""
    frames = len(tokens)
    generator = torch.Generator().manual_seed(seed)
    condition = torch.zeros(1, frames, 64)
    regenerate = torch.ones(frames, 1, dtype=torch.bool)
    if encoding is not None:
        mean, scale = torch.from_numpy(encoding.T.copy())[None].chunk(2, dim=1)
        sample = torch.randn(mean.shape, generator=generator) * (functional.softplus(scale) + 1e-4) + mean
        condition = sample.transpose(1, 2)[:, :frames]
        regenerate = torch.zeros(frames, 1, dtype=torch.bool)
        for start, end in spans:
            first = 0 if start == -1 else frame_of(start)
            last = 6144 if end == -1 else frame_of(end)
            regenerate[first:last] = True
    y = torch.randn(frames, 64, generator=generator)[None]
    negative = torch.from_numpy(np.load(FIXTURE / "negative_style.npy").astype(np.float16).astype(np.float32))
    style = torch.from_numpy(style.astype(np.float16).astype(np.float32))[None]
    text = torch.from_numpy(np.asarray(tokens, np.int64))[None]
    start = torch.tensor([0.0])
    duration = torch.tensor([duration_input(frames, 6144)])
    step_condition = torch.where(regenerate, torch.zeros_like(condition), condition)
    grid = torch.linspace(0, 1, steps)
    with torch.no_grad():
        for k in range(steps - 1):
            pred = model(y, step_condition, text, grid[k], style, start, duration)
            null = model(
                y, step_condition, text, grid[k], negative.reshape(1, 512), start, duration, True, True
            )
            y = y + (grid[k + 1] - grid[k]) * (pred + (pred - null) * cfg)
    return torch.where(regenerate, y, condition)[0].numpy(), condition[0].numpy()


@pytest.mark.parametrize(
    ("style_file", "drop", "expected"),
    [("style.npy", False, "forward_out.npy"), ("negative_style.npy", True, "forward_out_uncond.npy")],
    ids=["conditional", "unconditional"],
)
def test_forward_matches_reference(
    engine: DiffRhythm1Engine, style_file: str, drop: bool, expected: str
) -> None:
    forward = CASE["forward"]
    style = torch.from_numpy(np.load(FIXTURE / style_file).astype(np.float16).astype(np.float32)).reshape(
        1, 512
    )
    scalars = [
        torch.tensor([forward[name]], dtype=torch.float32) for name in ("time", "start_time", "duration")
    ]
    with torch.no_grad():
        out = engine.model(
            tensor("forward_x.npy"),
            tensor("forward_cond.npy"),
            tensor("forward_text.npy"),
            scalars[0],
            style,
            *scalars[1:],
            drop_audio_cond=drop,
            drop_text=drop,
        )
    assert np.abs(out[0].numpy() - np.load(FIXTURE / expected)).max() <= 1e-4


def test_latents_match_reference(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    request = GenerationRequest(
        tokens=np.array(CASE["expected_tokens"], np.int64),
        style=style,
        seed=CASE["seed"],
        steps=CASE["steps"],
        cfg_strength=CASE["cfg_strength"],
        seconds=CASE["seconds"],
    )
    events = list(engine.generate(request))
    assert events[: CASE["steps"] - 1] == [
        GenerationProgress(k, CASE["steps"] - 1) for k in range(1, CASE["steps"])
    ]
    (block,) = events[CASE["steps"] - 1 :]
    assert (block.index, block.final, block.max_blocks, block.frames_done) == (0, True, 1, CASE["frames"])
    assert block.frames.dtype == np.float32 and block.frames.shape == (CASE["frames"], 64)
    assert np.abs(block.frames - np.load(FIXTURE / CASE["expected_latents"])).max() <= 1e-3


def test_length_mode_and_duration_input() -> None:
    assert frame_of(CASE["seconds"]) == CASE["frames"]
    assert duration_input(CASE["frames"], CASE["max_frames"]) == CASE["song_duration"]


def test_sampler_equals_the_plain_algorithm_on_a_short_song(
    engine: DiffRhythm1Engine, style: np.ndarray
) -> None:
    tokens = np.array(CASE["expected_tokens"][:300], np.int64)
    expected, _ = reference_sample(engine.model, tokens, style, 7, 3, 4.0, 0)
    song_inputs = engine.plan(
        GenerationRequest(tokens=np.zeros(2067, np.int64), style=style, seconds=96)
    ).song
    short = type(song_inputs)(tokens, song_inputs.style, 0.0, duration_input(300, 6144))
    *_, sampled = engine.sampler.sample(short, [7], 3, 4.0)
    assert np.abs(sampled.latents[0] - expected).max() <= 1e-4


def test_edit_keeps_the_reference_outside_the_spans(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    encoding = rng.normal(size=(2100, 128)).astype(np.float32)
    tokens = np.array(CASE["expected_tokens"][:2067], np.int64)
    spans = [(-1, 10.0), (90.0, -1)]
    options = DiffRhythm1Options(tuple(EditSpan(*span) for span in spans))
    request = GenerationRequest(
        tokens=tokens, style=style, seed=11, steps=2, seconds=96, reference=encoding, options=options
    )
    _, latents = song(engine.generate(request))
    expected, reference = reference_sample(engine.model, tokens, style, 11, 2, 4.0, 96, encoding, spans)
    assert np.abs(latents - expected).max() <= 1e-4
    kept = slice(frame_of(10.0), frame_of(90.0))
    assert np.array_equal(latents[kept], reference[kept])
    assert np.abs(latents[: kept.start] - reference[: kept.start]).min() > 0


def test_candidates_equal_solo_runs_with_their_seeds(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    def request(seed: int, candidates: int) -> GenerationRequest:
        options = DiffRhythm1Options(candidates=candidates)
        return GenerationRequest(style=style, seed=seed, steps=2, seconds=96, options=options)

    events = [event for event in engine.generate(request(40, 2)) if isinstance(event, GeneratedBlock)]
    assert [(block.candidate, block.index, block.final, block.frames_done) for block in events] == [
        (0, 0, False, 2067),
        (1, 1, True, 2 * 2067),
    ]
    for block, seed in zip(events, (40, 41), strict=True):
        _, solo = song(engine.generate(request(seed, 1)))
        assert np.abs(block.frames - solo).max() <= 1e-5
    assert not np.allclose(events[0].frames, events[1].frames)
    resumed = replace(request(40, 2), prefix=[events[0].frames])
    (rest,) = [event for event in engine.generate(resumed) if isinstance(event, GeneratedBlock)]
    assert (rest.candidate, rest.index, rest.final) == (1, 1, True)
    assert np.abs(rest.frames - events[1].frames).max() <= 1e-5


def test_blocks_are_at_most_one_mebibyte_and_a_prefix_skips_them() -> None:
    latents = np.arange(9000 * 64, dtype=np.float32).reshape(9000, 64)
    blocks = list(DiffRhythm1Engine._blocks([latents], 1))
    assert [(block.index, len(block.frames), block.final, block.frames_done) for block in blocks] == [
        (1, BLOCK_FRAMES, False, 2 * BLOCK_FRAMES),
        (2, 9000 - 2 * BLOCK_FRAMES, True, 9000),
    ]
    assert all(block.frames.nbytes <= 1 << 20 and block.max_blocks == 3 for block in blocks)
    assert all(block.candidate == 0 for block in blocks)
    assert np.array_equal(np.concatenate([block.frames for block in blocks]), latents[BLOCK_FRAMES:])

    second = -latents
    blocks = list(DiffRhythm1Engine._blocks([latents, second], 2))
    assert [(b.index, b.candidate, b.final, b.frames_done, b.max_blocks) for b in blocks] == [
        (2, 0, False, 9000, 6),
        (3, 1, False, 9000 + BLOCK_FRAMES, 6),
        (4, 1, False, 9000 + 2 * BLOCK_FRAMES, 6),
        (5, 1, True, 18000, 6),
    ]
    assert np.array_equal(np.concatenate([block.frames for block in blocks[1:]]), second)


def test_cancellation_stops_between_steps(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    from services.runtime.cancellation import CancellationToken
    from services.runtime.errors import CancelledError

    token = CancellationToken()
    events = engine.generate(GenerationRequest(style=style, steps=8, seconds=96), token)
    assert next(events) == GenerationProgress(1, 7)
    token.cancel()
    with pytest.raises(CancelledError):
        next(events)


def test_invalid_requests_name_their_fields(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    assert invalid(engine, style=style, seconds=95)[0][0] == "seconds"
    assert invalid(engine, style=style, seconds=100.5)[0][0] == "seconds"
    assert invalid(engine, style=style, tokens=np.zeros(2048, np.int64))[0][0] == "seconds"
    assert invalid(engine, style=style, tokens=np.zeros(100, np.int64), seconds=96)[0][0] == "token_ids"
    assert invalid(engine, style=style, tokens=np.full(2067, 364), seconds=96)[0][0] == "token_ids"
    assert invalid(engine, style=np.zeros(3, np.float32), seconds=96)[0][0] == "style"
    assert invalid(engine, style=np.full(512, np.nan, np.float32), seconds=96)[0][0] == "style"
    assert [field for field, _ in invalid(engine, style=style, seconds=96, steps=1, cfg_strength=25.0)] == [
        "steps",
        "cfg_strength",
    ]
    assert invalid(engine, style=style, seconds=96, seed=-1)[0][0] == "seed"
    nine = DiffRhythm1Options(candidates=9)
    assert invalid(engine, style=style, seconds=96, options=nine)[0][0] == "diffrhythm1.candidates"
    assert invalid(engine, style=style, seconds=96, prefix=[np.zeros((10, 64), np.float32)])[0][0] == "prefix"
    capped = DiffRhythm1Engine(engine.model, engine.sampler.negative_style, max_frames_cap=2100)
    assert invalid(capped, style=style, seconds=100) == [
        ("seconds", "2153 frames is more than this stage's cap of 2100")
    ]


def test_invalid_edits_name_their_fields(engine: DiffRhythm1Engine, style: np.ndarray) -> None:
    spans = DiffRhythm1Options((EditSpan(10.0, 20.0),))
    encoding = np.zeros((2067, 128), np.float32)
    base = {"style": style, "seconds": 96}
    assert invalid(engine, **base, options=spans)[0][0] == "diffrhythm1.edit_spans"
    assert invalid(engine, **base, reference=encoding)[0][0] == "reference"
    assert invalid(engine, **base, reference=encoding[:2000], options=spans)[0][0] == "reference"
    assert invalid(engine, **base, reference=encoding[:, :64], options=spans)[0][0] == "reference"
    backwards = DiffRhythm1Options((EditSpan(20.0, 10.0), EditSpan(-3.0, 5.0)))
    assert [field for field, _ in invalid(engine, **base, reference=encoding, options=backwards)] == [
        "diffrhythm1.edit_spans[0]",
        "diffrhythm1.edit_spans[1]",
    ]


def test_family_is_detected_from_the_config_and_parses_its_options() -> None:
    assert FAMILY.detect(FIXTURE)
    assert GENERATION_FAMILIES.detect(FIXTURE).name == "diffrhythm1"
    message = SimpleNamespace(edit_spans=[SimpleNamespace(start_seconds=-1, end_seconds=12.5)], candidates=0)
    assert parse_options(message) == DiffRhythm1Options((EditSpan(-1.0, 12.5),), 1)


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture model folder."""
    for name in MODEL_FILES:
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


def resave(folder: Path, change) -> None:
    """Load the folder's checkpoint, apply `change` to its state dict, save it back."""
    checkpoint = torch.load(folder / "cfm_model.pt", weights_only=True)
    change(checkpoint["model_state_dict"])
    torch.save(checkpoint, folder / "cfm_model.pt")


def test_missing_key_is_named(model_copy: Path) -> None:
    resave(model_copy, lambda state: state.pop("transformer.proj_out.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys: transformer\.proj_out\.bias"):
        load_dit(model_copy)


def test_unexpected_key_is_named(model_copy: Path) -> None:
    resave(model_copy, lambda state: state.update({"transformer.extra.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: transformer\.extra\.weight"):
        load_dit(model_copy)


def test_wrong_shape_is_named(model_copy: Path) -> None:
    resave(model_copy, lambda state: state.update({"transformer.proj_out.bias": torch.zeros(3)}))
    with pytest.raises(
        CheckpointError, match=r"transformer\.proj_out\.bias has shape \(3,\), expected \(64,\)"
    ):
        load_dit(model_copy)


def test_checkpoint_is_read_as_weights_only(model_copy: Path) -> None:
    torch.save({"model_state_dict": {}, "code": SimpleNamespace(x=1)}, model_copy / "cfm_model.pt")
    with pytest.raises(CheckpointError, match="cannot be read as a weights-only checkpoint"):
        load_dit(model_copy)
    torch.save({"state": {}}, model_copy / "cfm_model.pt")
    with pytest.raises(CheckpointError, match="holds no 'model_state_dict' dict"):
        load_dit(model_copy)


def test_demo_base_model_makes_95_second_songs(tmp_path: Path, style: np.ndarray) -> None:
    folder = write_demo_generator(tmp_path, full=False)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["family"] == "diffrhythm1"
    assert manifest["files"]["cfm_model.pt"]["sha256"] == sha256_file(folder / "cfm_model.pt")
    assert set(manifest["files"]) == set(MODEL_FILES)
    engine = DiffRhythm1Engine.load(folder)
    assert not engine.config.full_model and not hasattr(engine.model, "duration_time_embed")
    assert invalid(engine, style=style, seconds=96)[0][0] == "seconds"
    _, latents = song(engine.generate(GenerationRequest(style=style, steps=2)))
    assert latents.shape == (2048, 64) and np.isfinite(latents).all()
