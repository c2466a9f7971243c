"""Every intermediate of the reference run recorded in tests/fixtures/mug-tiny, through our code."""

from __future__ import annotations

import numpy as np
import torch

from services.chart.engine import Chart, ChartProgress
from services.chart.mug.engine import arrange
from services.chart.mug.grid import fit_grid, snap
from services.chart.mug.hit_objects import KEYS, notes_to_hit_objects
from services.chart.mug.mini_jacks import remove_mini_jacks
from services.chart.mug.sampler import Conditioning, start_noise, visited_timesteps
from tests.chart.conftest import latents_tolerance, reference_request


def _lines(hits) -> list[str]:
    return [hit.line(KEYS) for hit in hits]


def test_mel_features_are_bit_exact(engine, fixture_dir, case, song_bytes) -> None:
    request = reference_request(engine, case, song_bytes)
    features, length = engine.song_features(engine.read_song(request.audio))
    expected = np.load(fixture_dir / "expected_audio_features.npy")
    assert length == case["latent_length"] and features.shape == expected.shape
    assert np.count_nonzero(features[:, case["mel_frames"] :]) == 0
    np.testing.assert_array_equal(features, expected.astype(np.float32))


def test_audio_encoder_outputs(engine, fixture_dir) -> None:
    features = np.load(fixture_dir / "expected_audio_features.npy").astype(np.float32)
    levels = engine.audio_levels(features)
    expected = np.load(fixture_dir / "expected_unet_audio_levels.npz")
    assert len(levels) == 4
    for index, level in enumerate(levels):
        reference = expected[f"level{index}"]
        assert level.shape[1:] == reference.shape
        assert np.abs(level[0].numpy() - reference).max() <= 1e-4


def test_prompt_ids_and_timesteps(engine, case) -> None:
    values = engine.parse_features([f"{name}={text}" for name, text in case["features"].items()])
    assert engine.prompt.ids(values) == case["feature_ids"]
    assert engine.prompt.unconditional_ids() == case["uncond_feature_ids"]
    assert visited_timesteps(case["steps"], 1000) == case["ddim_timesteps_descending"]


def test_start_noise_is_the_reference_draw(fixture_dir, case) -> None:
    noise = start_noise([case["seed"]], (16, case["latent_length"]))
    np.testing.assert_array_equal(noise[0].numpy(), np.load(fixture_dir / "expected_noise.npy"))


def test_first_unet_output(engine, fixture_dir, case) -> None:
    features = np.load(fixture_dir / "expected_audio_features.npy").astype(np.float32)
    values = engine.parse_features([f"{name}={text}" for name, text in case["features"].items()])
    context, unconditional = engine.contexts(values, 1, guided=True)
    noise = torch.from_numpy(np.load(fixture_dir / "expected_noise.npy"))[None]
    conditioning = Conditioning(context, unconditional, engine.audio_levels(features))
    with torch.inference_mode():
        eps = engine.model.unet_model(
            torch.cat([noise, noise]),
            torch.full((1,), case["first_eps_timestep"]),
            torch.cat([unconditional, context]),
            [level.expand(2, -1, -1) for level in conditioning.audio],
            engine.plan(case["latent_length"]),
        )
    expected = np.load(fixture_dir / "expected_first_eps.npy")
    assert np.abs(eps.numpy() - expected).max() <= 1e-4


def test_latents_and_progress(reference_run, fixture_dir, case) -> None:
    progress = [event for event in reference_run.events if isinstance(event, ChartProgress)]
    assert [(p.step, p.total_steps) for p in progress] == [(i, 13) for i in range(1, 14)]
    assert isinstance(reference_run.events[-1], Chart) and len(reference_run.events) == 14
    expected = np.load(fixture_dir / "expected_latents.npy")
    latents = reference_run.chart.latents
    assert latents.shape == expected.shape and latents.dtype == np.float32
    assert np.abs(latents - expected).max() <= latents_tolerance(expected)


def test_note_logits(engine, reference_run, fixture_dir) -> None:
    expected = np.load(fixture_dir / "expected_notes.npy")
    from_reference = engine.decode_notes(
        torch.from_numpy(np.load(fixture_dir / "expected_latents.npy"))[None]
    )
    assert np.abs(from_reference[0] - expected).max() <= 1e-5
    from_ours = engine.decode_notes(torch.from_numpy(reference_run.chart.latents)[None])
    assert np.abs(from_ours[0] - expected).max() <= 1e-4


def test_hit_objects_grid_snapping_and_clean_up(fixture_dir, case) -> None:
    raw = notes_to_hit_objects(np.load(fixture_dir / "expected_notes.npy"), case["frame_ms"])
    assert _lines(raw) == case["hit_objects_raw"]
    grid = fit_grid([hit.start_ms for hit in raw])
    assert abs(grid.bpm - case["bpm"]) <= 1e-9 and abs(grid.offset_ms - case["offset_ms"]) <= 1e-9
    snapped = [
        type(hit)(
            hit.column, snap(hit.start_ms, grid), None if hit.end_ms is None else snap(hit.end_ms, grid)
        )
        for hit in raw
    ]
    assert _lines(snapped) == case["hit_objects_snapped"]
    assert _lines(remove_mini_jacks(snapped)) == case["hit_objects"]
    assert grid.timing_point() == case["timing_point"]
    assert _lines(arrange(raw, True, case["mini_jack_interval_ms"])[1]) == case["hit_objects"]


def test_osu_file_matches_line_for_line(reference_run, fixture_dir, case) -> None:
    masked = tuple(f"{key}:" for key in case["osu_masked_lines"])
    ours = [line for line in reference_run.chart.osu.split("\n") if not line.startswith(masked)]
    expected = [
        line for line in (fixture_dir / "expected.osu").read_text().split("\n") if not line.startswith(masked)
    ]
    assert ours == expected
    assert _lines(reference_run.chart.hit_objects) == case["hit_objects"]
    assert "Mode: 3" in ours and "CircleSize: 4" in ours


def test_chart_without_notes_keeps_the_fallback_grid() -> None:
    grid, hits = arrange([], True, 90)
    assert hits == [] and grid.timing_point() == "0,500.0,4,2,1,20,1,0"
