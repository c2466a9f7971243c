"""DiffRhythm v1 through the gateway: the demo model, peak-normalised songs (or the raw level),
candidates as separate files, the middle crop of a style recording, `songsmith generate` in process
and through `songsmith up`, and bad LRC refused with the field and line."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
import torch

from gateway.audio import peak_normalize_int16
from gateway.cli import main
from gateway.client import SongClient
from gateway.commands.songs import SongSettings, build_request, edit_span
from gateway.launcher import STAGE_THREADING
from gateway.model_store import write_demo_diffrhythm1
from gateway.models import discover
from gateway.pipeline import Pipeline
from gateway.results import MemoryResults
from gateway.router import Router
from gateway.validation import song_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import CancelledError, InvalidArgumentError
from services.runtime.interceptor import field_violations
from services.runtime.model_info import MANIFEST_FILE
from services.style.muq_mulan.demo import write_demo_model
from services.vocoder.engine import PcmPiece
from songsmith.v1 import song_pb2
from tests.helpers import free_port_block

ROOT = Path(__file__).resolve().parents[2]
LYRICS = ROOT / "tests" / "fixtures" / "diffrhythm1-tiny" / "lyrics.lrc"
STYLE = "lofi piano, rainy night"
FRAMES = 2067  # a 96 s song: int(96 * 44100 / 2048)
SAMPLES = FRAMES * 2048


@pytest.fixture(autouse=True, scope="module")
def single_thread_torch():
    """One intra-op thread, as the stage processes of `songsmith up` run on this 2-core machine
    (OMP_NUM_THREADS is half the cores), so songs made here equal theirs bit for bit."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(STAGE_THREADING["OMP_NUM_THREADS"]))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root with only the DiffRhythm v1 demo and the MuQ-MuLan demo it uses."""
    root = tmp_path_factory.mktemp("dr1-models")
    write_demo_model(root / "muq-mulan")
    write_demo_diffrhythm1(root)
    return root


@pytest.fixture(scope="module")
def pipeline(models: Path) -> Pipeline:
    """The in-process pipeline over the root's one model."""
    return Pipeline(Router(discover(models)))


def dr1_request(job_id: str = "", seed: int = 5, **options: object) -> song_pb2.SongRequest:
    """A 96 s DiffRhythm v1 WAV song from the fixture's LRC, 2 grid points (one Euler update)."""
    message = song_pb2.SongRequest(
        job_id=job_id,
        model="diffrhythm1",
        lyrics=LYRICS.read_text(encoding="utf-8"),
        style_prompt=STYLE,
        seed=seed,
        steps=2,
        format=song_pb2.AUDIO_FORMAT_WAV,
    )
    message.max_duration.FromSeconds(96)
    for name, value in options.items():
        setattr(message.diffrhythm1, name, value)
    return message


def files_of(events: Iterable[song_pb2.SongEvent]) -> tuple[dict[int, bytes], list[song_pb2.SongEvent]]:
    """Each candidate's file from the audio events (pieces written at their offsets), and the events."""
    files: dict[int, bytearray] = {}
    seen = []
    for event in events:
        seen.append(event)
        if event.HasField("audio"):
            file = files.setdefault(event.audio.candidate, bytearray())
            offset, data = event.audio.offset, event.audio.data
            file.extend(bytes(max(0, offset + len(data) - len(file))))
            file[offset : offset + len(data)] = data
    return {candidate: bytes(data) for candidate, data in files.items()}, seen


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """A WAV file's int16 samples [channels, n] and rate."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return samples.T, rate


class RecordingVocoder:
    """The real vocoder client, recording every PCM piece and when it came (as a count of events)."""

    def __init__(self, inner, log: list[str]) -> None:
        self._inner = inner
        self._log = log
        self.pieces: list[np.ndarray] = []

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def decode(
        self, blocks, job_id: str, token: CancellationToken, start_sample: int = 0
    ) -> Iterator[PcmPiece]:
        for piece in self._inner.decode(blocks, job_id, token, start_sample):
            self.pieces.append(piece.samples)
            self._log.append("pcm")
            yield piece


def run_recorded(pipeline: Pipeline, message: song_pb2.SongRequest):
    """Make the song in process with its vocoder recorded: its summary, every candidate's file, the
    raw decoded audio and the order of PCM pieces and audio events."""
    order: list[str] = []
    model = copy.copy(pipeline.router.default)
    model.vocoder = RecordingVocoder(model.vocoder, order)
    router = copy.copy(pipeline.router)
    router.models = [model]

    def emit(event: song_pb2.SongEvent) -> None:
        if event.HasField("audio"):
            order.append("audio")

    outputs = MemoryResults()
    result = Pipeline(router).run(
        song_spec(message, message.job_id or "t", message.seed), CancellationToken(), emit, outputs=outputs
    )
    return result.summary, outputs.files, np.concatenate(model.vocoder.pieces, axis=1), order


@pytest.fixture(scope="module")
def single_song(pipeline: Pipeline):
    """The seed-5 song, peak-normalised as the model's reference writes it: (summary, files, raw audio,
    order)."""
    return run_recorded(pipeline, dr1_request())


def test_models_demo_writes_a_diffrhythm1_model_the_gateway_routes(tmp_path: Path, capsys) -> None:
    assert main(["models", "demo", "--model-root", str(tmp_path)]) == 0
    assert "DiffRhythm v1 demo model (96..285 s songs) written" in capsys.readouterr().out
    folder = tmp_path / "diffrhythm1"
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["name"] == "diffrhythm1" and manifest["family"] == "diffrhythm1"
    assert set(manifest["files"]) == {"cfm_model.pt", "config.json", "negative_style.npy", "vae_model.pt"}
    pinned = manifest["files"]["vae_model.pt"]["sha256"]
    assert pinned == hashlib.sha256((folder / "vae_model.pt").read_bytes()).hexdigest()
    routes = {route.name: route.stages for route in discover(tmp_path)}
    assert list(routes) == ["diffrhythm2", "diffrhythm1", "musicgen-demo"]
    assert routes["diffrhythm1"] == {
        "tokenizer": "local",
        "style": routes["diffrhythm2"]["style"],
        "diffusion": f"local:{folder}",
        "vocoder": f"local:{folder}",
    }
    assert main(["models", "list", "--model-root", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["diffrhythm1", "diffrhythm1"] for line in listed)


def test_a_song_is_written_peak_normalised_as_the_reference_writes_it(single_song) -> None:
    summary, files, raw, order = single_song
    samples, rate = wav_samples(files[0])
    assert rate == 44100 and samples.shape == (2, SAMPLES) == raw.shape
    assert np.array_equal(samples, peak_normalize_int16(raw))
    assert np.abs(samples).max() == 32767
    assert order.index("audio") > len(order) - order[::-1].index("pcm") - 1, "audio came before the end"
    assert (summary.sample_rate, summary.channels, summary.seed, summary.model) == (
        44100,
        2,
        5,
        "diffrhythm1",
    )
    assert summary.duration.ToNanoseconds() == round(SAMPLES / 44100 * 1e9)
    assert len(summary.candidates) == 0 and len(files) == 1


def test_keep_raw_level_streams_the_decoded_level(pipeline: Pipeline, single_song) -> None:
    _, _, raw, _ = single_song
    _, files, again, order = run_recorded(pipeline, dr1_request(keep_raw_level=True))
    assert np.array_equal(again, raw)
    samples, _ = wav_samples(files[0])
    inside = np.abs(raw) < 1
    assert inside.mean() > 0.5
    assert np.abs(samples[inside] / 32767 - raw[inside]).max() <= 2 / 32767  # libsndfile's rounding
    assert abs(np.abs(raw).max() - 1) > 0.01, "the raw level differs from the peak-normalised one"
    assert order.count("pcm") > 2 and order.index("audio") == 1, "the raw level streams window by window"


def test_candidates_through_the_cli_in_process(models: Path, tmp_path: Path, single_song, capsys) -> None:
    output = tmp_path / "song.wav"
    argv = ["generate", "--local", "--model-root", str(models), "--model", "diffrhythm1", "-q"]
    argv += ["--lyrics", str(LYRICS), "--seconds", "96", "--style", STYLE, "--steps", "2"]
    assert main([*argv, "--seed", "4", "--candidates", "2", "-o", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    first, second = tmp_path / "song-1.wav", tmp_path / "song-2.wav"
    assert not output.exists() and first.is_file() and second.is_file()
    assert [line.split(":")[0] for line in printed] == [str(first), str(second)]
    assert "seed 4" in printed[0] and "seed 5" in printed[1]
    assert second.read_bytes() == single_song[1][0], "candidate 1 of seed 4 is the seed-5 song"
    assert first.read_bytes() != second.read_bytes()


def test_a_style_recording_is_embedded_from_its_middle(pipeline: Pipeline) -> None:
    rate = 24000
    tone = np.sin(np.linspace(0, 2000, 21 * rate)).astype(np.float32) * np.linspace(0, 1, 21 * rate)
    buffer = io.BytesIO()
    soundfile.write(buffer, tone.astype(np.float32), rate, format="WAV", subtype="FLOAT")
    recording = buffer.getvalue()
    token = CancellationToken()
    model = copy.copy(pipeline.router.default)
    crops: list[tuple[str, np.ndarray]] = []

    class RecordingStyle:
        def __getattr__(self, name: str):
            return getattr(pipeline.router.default.style, name)

        def embed_audio(self, data, crop, job_id, call_token):
            vector = pipeline.router.default.style.embed_audio(data, crop, job_id, call_token)
            crops.append((crop, vector))
            token.cancel("the style is all this test needs")
            return vector

    model.style = RecordingStyle()
    router = copy.copy(pipeline.router)
    router.models = [model]
    message = dr1_request()
    message.ClearField("style_prompt")
    message.style_audio = recording
    with pytest.raises(CancelledError):
        Pipeline(router).run(song_spec(message, "crop", 5), token, lambda event: None)
    ((crop, vector),) = crops
    engine = pipeline.router.default.style.engine
    assert crop == "middle"
    np.testing.assert_array_equal(vector, engine.embed_audio(recording, crop="middle").vector)
    assert not np.allclose(vector, engine.embed_audio(recording).vector)


def test_a_length_the_model_cannot_make_names_max_duration(pipeline: Pipeline) -> None:
    message = dr1_request()
    message.ClearField("max_duration")
    with pytest.raises(InvalidArgumentError) as caught:
        pipeline.run(song_spec(message, "no-length", 5), CancellationToken(), lambda event: None)
    assert [v.field for v in caught.value.violations] == ["max_duration"]


@pytest.fixture(scope="module")
def candidate_songs(models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """Seed 4 with two candidates, made in process by the pipeline."""
    pipeline = Pipeline(Router(discover(models)))
    outputs = MemoryResults()
    result = pipeline.run(
        song_spec(dr1_request(seed=4, candidates=2), "pair", 4),
        CancellationToken(),
        lambda e: None,
        outputs=outputs,
    )
    files = outputs.files
    assert [(c.candidate, c.seed, c.size_bytes) for c in result.summary.candidates] == [
        (0, 4, len(files[0])),
        (1, 5, len(files[1])),
    ]
    return dict(enumerate(files))


@pytest.fixture(scope="module")
def up(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`songsmith up` on the DiffRhythm v1 root; the gateway's address once every process is healthy."""
    base = free_port_block(5)
    var = tmp_path_factory.mktemp("dr1-up")
    command = [sys.executable, "-m", "gateway.cli", "up", "--model-root", str(models), "--port", str(base)]
    command += ["--metrics-port", "0", "--var-dir", str(var)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 300
        lines = []
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("ready:")):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert lines and lines[-1].startswith("ready:"), (lines, (var / "logs").glob("*.log"))
        yield f"127.0.0.1:{base}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_cli_through_up_makes_the_in_process_song(up: str, tmp_path: Path, single_song) -> None:
    output = tmp_path / "song.wav"
    argv = ["generate", "--server", up, "--model", "diffrhythm1", "--lyrics", str(LYRICS), "-q"]
    argv += ["--seconds", "96", "--style", STYLE, "--steps", "2", "--seed", "5", "-o", str(output)]
    assert main(argv) == 0
    assert output.read_bytes() == single_song[1][0]


def test_candidates_through_the_grpc_stack_and_their_replay(
    up: str, candidate_songs: dict[int, bytes]
) -> None:
    client = SongClient(up)
    try:
        files, events = files_of(client.generate(dr1_request("dr1-pair", seed=4, candidates=2), timeout=300))
        assert files == candidate_songs
        done = events[-1].done
        assert [(c.candidate, c.seed) for c in done.candidates] == [(0, 4), (1, 5)]
        audio = [event.audio.candidate for event in events if event.HasField("audio")]
        assert audio == sorted(audio) and set(audio) == {0, 1}, "candidate 0's file first, then 1's"
        replayed, _ = files_of(client.watch("dr1-pair", timeout=60))
        assert replayed == candidate_songs
    finally:
        client.close()


@pytest.mark.parametrize(
    ("lyrics", "seconds", "field", "says"),
    [
        ("[00:01.00]\n[00:09.00]la la la", 96, "lyrics", "line 1: a timestamp without words to sing"),
        (
            "[0:05.00]one digit of minutes\n[00:7.5]one decimal",
            96,
            "lyrics",
            "no line starts with an [mm:ss.xx]",
        ),
        ("[ti:only tags]\n[ar:nobody]", 96, "lyrics", "no line starts with an [mm:ss.xx]"),
        ("[00:01.00]hello\n[00:04.00]2025!", 96, "lyrics", "line 2: only digits, punctuation"),
        ("[00:01.00]hello", 300, "max_duration", "must be 95 or a whole number in 96..285"),
    ],
    ids=["stamp-without-words", "malformed-stamps", "only-tags", "nothing-to-sing", "out-of-range-seconds"],
)
def test_bad_lrc_through_the_gateway(up: str, lyrics: str, seconds: int, field: str, says: str) -> None:
    message = dr1_request()
    message.lyrics = lyrics
    message.max_duration.FromSeconds(seconds)
    client = SongClient(up)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(client.generate(message, timeout=120))
    finally:
        client.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, says in v.description) for v in field_violations(caught.value)] == [(field, True)]


def test_edit_spans_from_the_command_line_reach_the_request(tmp_path: Path) -> None:
    settings = SongSettings(
        model="diffrhythm1", edit_spans=(edit_span(":12.5"), edit_span("60:"), edit_span("3:-1"))
    )
    request = build_request("", STYLE, None, tmp_path / "song.wav", settings)
    spans = [(span.start_seconds, span.end_seconds) for span in request.diffrhythm1.edit_spans]
    assert spans == [(-1.0, 12.5), (60.0, -1.0), (3.0, -1.0)]
    assert request.diffrhythm1.candidates == 1 and not request.diffrhythm1.keep_raw_level


@pytest.mark.parametrize("span", ["12", "a:3", "1:nan", "1:2:3"])
def test_a_malformed_edit_span_is_a_usage_error(span: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            ["generate", "--local", "--model", "diffrhythm1", "--style", STYLE, "--edit", span, "-o", "x.wav"]
        )
    assert exited.value.code == 2
    assert "is not START:END in seconds" in capsys.readouterr().err


def test_an_edit_through_the_cli_in_process(models: Path, tmp_path: Path, single_song) -> None:
    original, rate = wav_samples(single_song[1][0])
    reference = tmp_path / "reference.mp3"  # a request's recording is at most 3 MiB: a WAV of 96 s is not
    soundfile.write(reference, original.T.astype(np.float32) / 32767, rate, format="MP3")
    output = tmp_path / "edited.wav"
    argv = ["generate", "--local", "--model-root", str(models), "--model", "diffrhythm1", "-q"]
    argv += ["--lyrics", str(LYRICS), "--seconds", "96", "--style", STYLE, "--steps", "2", "--seed", "5"]
    argv += ["--reference-audio", str(reference), "--edit", "20:40", "-o", str(output)]
    assert main(argv) == 0
    edited, edited_rate = wav_samples(output.read_bytes())
    assert edited_rate == 44100 and edited.shape == original.shape
    assert not np.array_equal(edited, original), "the edit made a new song from the reference"
