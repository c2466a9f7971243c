"""`songsmith latents decode` through the real console entry point, and the demo decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from gateway.cli import main
from services.vocoder.diffrhythm2.demo import write_demo_decoder
from services.vocoder.diffrhythm2.engine import VocoderEngine


def _decode(fixture_dir: Path, latents: Path, output: Path) -> int:
    return main(["latents", "decode", "--model-dir", str(fixture_dir), str(latents), "-o", str(output)])


def test_decode_to_npy_matches_the_reference(fixture_dir: Path, tmp_path: Path):
    assert _decode(fixture_dir, fixture_dir / "expected_latents.npy", tmp_path / "song.npy") == 0
    audio = np.load(tmp_path / "song.npy")
    expected = np.load(fixture_dir / "expected_audio.npy")
    assert audio.dtype == np.float32 and audio.shape == expected.shape
    assert np.abs(audio - expected).max() <= 1e-5


def test_decode_to_wav_is_48khz_mono_with_the_same_samples(fixture_dir: Path, tmp_path: Path, capsys):
    latents = np.random.default_rng(3).standard_normal((12, 64)).astype(np.float32)
    np.save(tmp_path / "short.npy", latents)
    assert _decode(fixture_dir, tmp_path / "short.npy", tmp_path / "short.wav") == 0
    audio, rate = soundfile.read(tmp_path / "short.wav", dtype="float32")
    assert rate == 48000 and audio.ndim == 1 and len(audio) == 12 * 9600
    np.testing.assert_array_equal(audio, VocoderEngine.load(fixture_dir).decode(latents)[0])
    assert "2.4 s, 48000 Hz mono" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(fixture_dir: Path, tmp_path: Path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 32), np.float32))
    assert _decode(fixture_dir, tmp_path / "wrong.npy", tmp_path / "out.npy") == 2
    assert "songsmith: error:" in capsys.readouterr().err
    assert _decode(fixture_dir, tmp_path / "wrong.npy", tmp_path / "out.mp3") == 2
    assert "must end in .npy or .wav" in capsys.readouterr().err
    assert _decode(fixture_dir, tmp_path / "absent.npy", tmp_path / "out.npy") == 2
    assert "cannot read latents" in capsys.readouterr().err
    assert _decode(tmp_path, fixture_dir / "expected_latents.npy", tmp_path / "out.npy") == 2
    err = capsys.readouterr().err
    assert err.startswith("songsmith: error:") and "decoder.json does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "out.npy").exists()


def test_demo_decoder_is_deterministic_and_loadable(tmp_path: Path):
    write_demo_decoder(tmp_path / "a")
    write_demo_decoder(tmp_path / "b")
    assert (tmp_path / "a" / "decoder.bin").read_bytes() == (tmp_path / "b" / "decoder.bin").read_bytes()
    engine = VocoderEngine.load(tmp_path / "a")
    assert (engine.sample_rate, engine.channels, engine.samples_per_frame) == (48000, 64, 9600)
    audio = engine.decode(np.ones((3, 64), np.float32))
    assert audio.shape == (1, 3 * 9600) and np.isfinite(audio).all() and audio.std() > 0
