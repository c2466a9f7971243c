"""DiffRhythm v1's VAE: our modules against the scripted archive and the reference audio, the
window layout, streaming = chunked decode, the chunked encode, the sha256 pin and strict loading."""

from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
import soxr
import torch
from torch import nn

from services.runtime.errors import FailedPreconditionError, InvalidArgumentError
from services.runtime.model_info import MANIFEST_FILE
from services.vocoder.diffrhythm1 import FAMILY
from services.vocoder.diffrhythm1.engine import WINDOWS, DecodeOptions, DiffRhythm1Vocoder
from services.vocoder.diffrhythm1.models import random_vae, write_demo_vae
from services.vocoder.diffrhythm1.oobleck import OobleckConfig, OobleckVae, ScriptedVae
from services.vocoder.engine import PcmPiece
from services.vocoder.families import VOCODER_FAMILIES
from services.vocoder.windows import Paste

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "diffrhythm1-tiny"
DECODE_CASES = json.loads((FIXTURE / "case.json").read_text(encoding="utf-8"))["decode"]["cases"]
SPF = 2048


@pytest.fixture(scope="module")
def vocoder() -> DiffRhythm1Vocoder:
    """The fixture's VAE, read into our modules through the pinned archive."""
    return DiffRhythm1Vocoder.load(FIXTURE)


@pytest.fixture(scope="module")
def archive() -> torch.jit.ScriptModule:
    """The fixture's TorchScript archive itself, to compare against."""
    return torch.jit.load(str(FIXTURE / "vae_model.pt"), map_location="cpu")


def latents(frames: int, seed: int) -> np.ndarray:
    """Random latents [frames, 64]."""
    return np.random.default_rng(seed).standard_normal((frames, 64)).astype(np.float32)


@pytest.mark.parametrize("case", DECODE_CASES, ids=lambda case: "chunked" if case["chunked"] else "whole")
def test_decode_matches_reference_audio(vocoder: DiffRhythm1Vocoder, case: dict) -> None:
    audio = vocoder.decode(np.load(FIXTURE / case["latents"]), options=DecodeOptions(chunked=case["chunked"]))
    expected = np.load(FIXTURE / case["expected_audio"])
    assert audio.shape == expected.shape == tuple(case["shape"]) and audio.dtype == np.float32
    assert np.abs(audio - expected).max() <= 1e-5


def test_our_modules_equal_the_scripted_archive(vocoder: DiffRhythm1Vocoder, archive) -> None:
    frames = torch.from_numpy(latents(24, 1).T.copy())[None]
    audio = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (1, 2, 30 * SPF)).astype(np.float32))
    with torch.inference_mode():
        assert torch.equal(vocoder.vae.decoder(frames), archive.decode_export(frames))
        assert torch.equal(vocoder.vae.encoder(audio), archive.encode_export(audio))


def test_window_layout() -> None:
    assert WINDOWS.pastes(136) == [Paste(0, 128, 0, 112), Paste(8, 128, 16, 128)]
    assert WINDOWS.pastes(128) == [Paste(0, 128, 0, 128)]
    assert WINDOWS.pastes(100) == [Paste(0, 100, 0, 100)]
    assert WINDOWS.pastes(320) == [Paste(0, 128, 0, 112), Paste(96, 128, 16, 112), Paste(192, 128, 16, 128)]
    assert [paste.start for paste in WINDOWS.pastes(330)] == [0, 96, 192, 202]


@functools.cache
def sources(total: int) -> tuple[tuple[int, int], ...]:
    """(start, length) of the window each frame's samples come from in the reference paste order."""
    source = [(-1, 0)] * total
    for paste in WINDOWS.pastes(total):
        for frame in range(paste.start + paste.keep_from, paste.start + paste.keep_to):
            source[frame] = (paste.start, paste.frames)
    return tuple(source)


def test_final_frames_are_exactly_those_no_longer_song_can_change() -> None:
    for received in [*range(0, 140), *range(215, 235), 320, 321]:
        lengths = range(max(received, 1), received + 200)
        final = [frame for frame in range(received) if len({sources(total)[frame] for total in lengths}) == 1]
        assert final == list(range(WINDOWS.final_frame_count(received))), received


def joined(pieces: list[PcmPiece]) -> np.ndarray:
    """The pieces' samples, checked to be contiguous, as one [2, n] array."""
    offset = 0
    for piece in pieces:
        assert piece.offset == offset and piece.samples.shape[0] == 2 and piece.samples.dtype == np.float32
        offset += piece.samples.shape[1]
    return np.concatenate([piece.samples for piece in pieces], axis=1)


@pytest.mark.parametrize("frames", [100, 136, 250])
@pytest.mark.parametrize(
    "groups", [[1000], [7, 0, 121, 1, 40, 96], [96, 32, 64, 64, 200]], ids=["whole", "uneven", "hops"]
)
def test_streaming_equals_chunked_decode(vocoder: DiffRhythm1Vocoder, frames: int, groups: list[int]) -> None:
    song = latents(frames, frames)
    decoder = vocoder.stream()
    pieces, begin = [], 0
    for size in groups:
        pieces += decoder.push(song[begin : begin + size])
        begin += size
    pieces += decoder.finish()
    expected = vocoder.decode(song, options=DecodeOptions(chunked=True))
    assert np.array_equal(joined(pieces), expected)
    assert decoder.emitted_samples == frames * SPF


def test_audio_is_released_window_by_window(vocoder: DiffRhythm1Vocoder) -> None:
    song = latents(230, 5)
    decoder = vocoder.stream()
    assert decoder.push(song[:127]) == []
    assert joined(decoder.push(song[127:128])).shape == (2, 17 * SPF)
    decoder.push(song[128:224])
    assert decoder.emitted_samples == WINDOWS.final_frame_count(224) * SPF == 113 * SPF
    assert decoder.buffered_windows <= 2


def reference_chunked_encode(archive, audio: torch.Tensor) -> np.ndarray:
    """The notes' chunked encode in samples (128-frame windows, hop 96, last one end-aligned,
    16-frame trims), over the archive's own encoder."""
    total, window, hop = audio.shape[-1], 128 * SPF, 96 * SPF
    starts = list(range(0, total - window + 1, hop))
    if starts[-1] + window != total:
        starts.append(total - window)
    out = torch.zeros(128, total // SPF)
    for index, start in enumerate(starts):
        piece = archive.encode_export(audio[None, :, start : start + window])[0]
        last = index == len(starts) - 1
        begin = out.shape[1] - piece.shape[1] if last else start // SPF
        keep_from, keep_to = (16 if index else 0), piece.shape[1] - (0 if last else 16)
        out[:, begin + keep_from : begin + keep_to] = piece[:, keep_from:keep_to]
    return out.T.numpy()


def test_encode_matches_the_reference_chunked_encode(vocoder: DiffRhythm1Vocoder, archive) -> None:
    mono = np.random.default_rng(9).uniform(-0.3, 0.3, (1, 230 * SPF + 1000)).astype(np.float32)
    stereo = torch.from_numpy(mono).repeat(2, 1)
    normalised = stereo * (10.0 ** (-6 / 20) / stereo.abs().max())
    with torch.inference_mode():
        expected = reference_chunked_encode(archive, normalised)
    encoding = vocoder.encode(mono)
    assert encoding.shape == (230, 128) and np.array_equal(encoding, expected)
    three = np.concatenate([mono, mono, -mono])
    assert np.array_equal(vocoder.encode(three), expected)


def test_bad_reference_audio_is_invalid(vocoder: DiffRhythm1Vocoder) -> None:
    for audio in (np.zeros((2, 5000), np.float32), np.zeros((2, 100), np.float32), np.ones(5000, np.float32)):
        with pytest.raises(InvalidArgumentError) as exc:
            vocoder.encode(audio)
        assert exc.value.violations[0].field == "reference_audio"


def _file(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.T, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_a_recording_file_is_encoded_at_44_1_khz(vocoder: DiffRhythm1Vocoder) -> None:
    audio = np.random.default_rng(3).uniform(-0.3, 0.3, (2, 22050 * 3)).astype(np.float32)
    expected = vocoder.encode(soxr.resample(audio.T, 22050, 44100).T.astype(np.float32))
    encoding = vocoder.encode_recording(_file(audio, 22050))
    assert encoding.shape == (3 * 44100 // SPF, 128) and np.array_equal(encoding, expected)
    native = vocoder.encode_recording(_file(audio, 44100))
    assert np.array_equal(native, vocoder.encode(audio))


@pytest.mark.parametrize(
    "data",
    [b"", b"RIFF....WAVE", _file(np.zeros((2, 44100), np.float32), 44100)],
    ids=["empty", "garbage", "silent"],
)
def test_recordings_the_encoder_cannot_take_name_data(vocoder: DiffRhythm1Vocoder, data: bytes) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        vocoder.encode_recording(data)
    assert [v.field for v in exc.value.violations] == ["data"]


def test_bad_latents_are_invalid(vocoder: DiffRhythm1Vocoder) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        vocoder.decode(np.zeros((10, 32), np.float32))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and exc.value.violations[0].field == "frames"


def test_family_cli_reads_chunked_and_detects_the_folder() -> None:
    parser = argparse.ArgumentParser()
    FAMILY.cli.add_arguments(parser)
    assert FAMILY.cli.options(parser.parse_args(["--chunked"])) == DecodeOptions(chunked=True)
    assert FAMILY.cli.options(parser.parse_args([])) == DecodeOptions(chunked=False)
    assert VOCODER_FAMILIES.detect(FIXTURE).name == "diffrhythm1"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A writable copy of the fixture's VAE and manifest."""
    for name in ("vae_model.pt", MANIFEST_FILE):
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


def refused(folder: Path) -> str:
    """The FAILED_PRECONDITION message of loading the folder's VAE."""
    with pytest.raises(FailedPreconditionError) as exc:
        DiffRhythm1Vocoder.load(folder)
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    return exc.value.message


def test_an_unpinned_archive_is_never_opened(folder: Path) -> None:
    (folder / MANIFEST_FILE).unlink()
    message = refused(folder)
    assert (
        "vae_model.pt" in message and "songsmith models pull diffrhythm1" in message and "no pin" in message
    )


def test_a_changed_archive_is_never_opened(folder: Path) -> None:
    data = bytearray((folder / "vae_model.pt").read_bytes())
    data[-30] ^= 1
    (folder / "vae_model.pt").write_bytes(bytes(data))
    message = refused(folder)
    assert "vae_model.pt has sha256" in message and "it was changed after download" in message


def pin(folder: Path, module: nn.Module) -> None:
    """Script `module` into the folder's vae_model.pt and pin it in a fresh manifest."""
    from services.runtime.manifest import record_files

    torch.jit.save(torch.jit.script(module), str(folder / "vae_model.pt"))
    (folder / MANIFEST_FILE).unlink()
    record_files(folder, ["vae_model.pt"], name="test", family="diffrhythm1", source={})


def test_unexpected_and_missing_tensors_are_named(folder: Path) -> None:
    scripted = ScriptedVae(random_vae(4, 1))
    scripted.register_parameter("extra", nn.Parameter(torch.zeros(1)))
    pin(folder, scripted)
    assert "unexpected tensors: extra" in refused(folder)
    scripted = ScriptedVae(random_vae(4, 1))
    scripted.decoder.layers[7] = nn.Conv1d(4, 2, 7, padding=3, bias=True)
    pin(folder, scripted)
    assert "unexpected tensors: decoder.layers.7.bias" in refused(folder)


def test_demo_vae_is_pinned_and_loads(tmp_path: Path) -> None:
    write_demo_vae(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["family"] == "diffrhythm1" and set(manifest["files"]) == {"vae_model.pt"}
    vocoder = DiffRhythm1Vocoder.load(tmp_path)
    expected = random_vae(4, 11)
    frames = latents(8, 3)
    with torch.inference_mode():
        reference = expected.decoder(torch.from_numpy(frames.T.copy())[None])[0].numpy()
    assert np.array_equal(vocoder.decode(frames), reference)
    assert vocoder.info.revision == manifest["files"]["vae_model.pt"]["sha256"]
    assert isinstance(vocoder.vae, OobleckVae) and vocoder.vae.config == OobleckConfig(4)
